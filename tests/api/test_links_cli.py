"""包片联户 from the command line and as a plan step (files in, files out; no database)."""

from __future__ import annotations

import pandas as pd

from gridmap.linkage import (
    link_households,
)

from linkage_cases import _city


# ------------------------------------------------------------------------------------------------
# CLI and plan step


def test_cli_link_writes_csv_and_is_stable(tmp_path):
    from typer.testing import CliRunner

    from api.cli import app

    households, members, grids = _city(seed=4, grids=4, hh_per=30, members_per=(2, 4))
    for name, gdf in (("households", households), ("members", members), ("grids", grids)):
        gdf.to_file(tmp_path / f"{name}.geojson", driver="GeoJSON")
    out = tmp_path / "links.csv"
    args = ["link", "--households", str(tmp_path / "households.geojson"), "--members", str(tmp_path / "members.geojson"),
            "--grids", str(tmp_path / "grids.geojson"), "--out", str(out), "--report", str(tmp_path / "r.json")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "households linked" in r.output and "shortage per grid" in r.output
    df = pd.read_csv(out, dtype={"household_id": str, "member_id": str})
    assert list(df.columns) == ["household_id", "member_id", "distance_m", "visit_order"]
    assert df["household_id"].is_unique and df.groupby("member_id").size().max() <= 10
    direct = link_households(households, members, grids=grids)
    assert len(df) == direct.summary["linked"]
    assert abs(df["distance_m"].sum() - direct.summary["total_distance_m"]) < 0.1 * len(df)
    # Re-run with the CSV as previous links: nothing changes.
    r2 = CliRunner().invoke(app, args[:-2] + ["--previous", str(out), "--allow-cross-grid"])
    assert r2.exit_code == 0, r2.output
    assert "links changed vs previous" in r2.output
    report = __import__("json").loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["summary"]["linked"] == direct.summary["linked"]


def test_plan_step_adds_links_layer(tmp_path):
    from types import SimpleNamespace

    from api.usecases.links import step_links

    households, members, grids = _city(seed=6, grids=2, hh_per=25, members_per=(2, 3))
    ctx = SimpleNamespace(layers={"households": households, "members": members, "grids": grids}, layers_out={},
                          summary={}, notes=[], options=SimpleNamespace(extra={}))
    step_links(ctx)
    links = ctx.layers_out["links"]
    assert links.crs.to_epsg() == 4326 and links.geom_type.eq("LineString").all()
    assert ctx.summary["links"]["linked"] == len(links)
    assert sum(v["unlinked"] for v in ctx.summary["links"]["shortage_by_grid"].values()) == ctx.summary["links"]["unlinked"]
