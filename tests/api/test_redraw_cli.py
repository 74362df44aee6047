"""`gridmap redraw` and the plan's redraw step (files in, files out; no database)."""

from __future__ import annotations

import geopandas as gpd

from gridmap.districting import STATUS_KEPT

X0, Y0 = 230_000.0, 3_350_000.0  # Hangzhou, UTM 51N (metres)


# ---------------------------------------------------------------------------------------------
# command line and plan step


def test_cli_redraw_writes_grids_and_prints_summary(tmp_path, square):
    from typer.testing import CliRunner

    from api.cli import app

    comm, hh, first = square
    comm.to_file(tmp_path / "communities.geojson")
    hh[["household_id", "geometry"]].to_file(tmp_path / "households.geojson")
    # Today's grids: the fresh result with two grids merged into one over-size grid.
    cur = first.grids[["grid_code", "geometry"]].copy()
    codes = sorted(cur["grid_code"])
    cur.loc[cur["grid_code"] == codes[1], "grid_code"] = codes[0]
    cur.to_file(tmp_path / "grids.geojson")
    out = tmp_path / "out.geojson"
    res = CliRunner().invoke(app, ["redraw", "--households", str(tmp_path / "households.geojson"),
                                   "--boundaries", str(tmp_path / "communities.geojson"),
                                   "--grids", str(tmp_path / "grids.geojson"), "--out", str(out), "--seed", "7"])
    assert res.exit_code == 0, res.output
    got = gpd.read_file(out)
    assert {"grid_code", "community_code", "households", "geometry"} <= set(got.columns)
    assert got["households"].sum() == len(hh) and got["households"].between(300, 500).all()
    assert (got.loc[got["grid_code"].isin(codes[2:]), "status"] == STATUS_KEPT).all()
    assert "in band" in res.output and "100.0%" in res.output and "households moved" in res.output


def test_cli_rejects_bad_band(tmp_path, square):
    from typer.testing import CliRunner

    from api.cli import app

    comm, hh, _ = square
    comm.to_file(tmp_path / "c.geojson")
    hh[["household_id", "geometry"]].to_file(tmp_path / "h.geojson")
    res = CliRunner().invoke(app, ["redraw", "--households", str(tmp_path / "h.geojson"),
                                   "--boundaries", str(tmp_path / "c.geojson"),
                                   "--out", str(tmp_path / "o.geojson"), "--min", "600", "--max", "500"])
    assert res.exit_code == 2 and "min ≤ max" in res.output


def test_plan_step_redraw_only_with_flag(tmp_path, square):
    from api.usecases.plan import PlanContext, PlanOptions
    from api.usecases.redraw import step_redraw

    comm, hh, first = square
    layers = {"communities": comm, "households": hh[["household_id", "geometry"]].copy()}
    ctx = PlanContext(layers=dict(layers), outdir=tmp_path, options=PlanOptions(redraw=False))
    step_redraw(ctx)
    assert "redraw_grids" not in ctx.layers_out and "grids" not in ctx.layers
    ctx = PlanContext(layers=dict(layers), outdir=tmp_path, options=PlanOptions(redraw=True, seed=7))
    step_redraw(ctx)
    assert ctx.summary["redraw"]["in_band_pct"] == 100.0
    assert len(ctx.layers["grids"]) == len(ctx.layers_out["redraw_grids"])
    assert ctx.layers["households"]["grid_code"].notna().all()
    # With today's grids: minimal change, and today's grids and codes kept for the before/after map.
    current = first.grids[["grid_code", "geometry"]]
    hh_coded = layers["households"].assign(grid_code=first.households.to_numpy())
    ctx = PlanContext(layers={**layers, "grids": current, "households": hh_coded}, outdir=tmp_path,
                      options=PlanOptions(redraw=True, seed=7))
    step_redraw(ctx)
    assert ctx.summary["redraw"]["kept"] == len(current) and ctx.summary["redraw"]["moved"] == 0
    assert len(ctx.layers_out["grids_before_redraw"]) == len(current)
    assert (ctx.layers["households"]["previous_grid_code"] == ctx.layers["households"]["grid_code"]).all()


# ---------------------------------------------------------------------------------------------
# the bundled sample (issue 11, finding 9)


def test_plan_with_redraw_on_bundled_sample(tmp_path):
    """``gridmap plan <sample> --redraw``: grids, households and buildings together (it crashed with
    ``UnboundLocalError: b_atom`` when every building of a community lay in a kept grid)."""
    import json

    from typer.testing import CliRunner

    from api.cli import app
    from conftest import SAMPLE

    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["plan", str(SAMPLE), "--out", str(out), "--redraw", "--no-maps"])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["redraw"]["grids"] > 0
    grids = gpd.read_file(out / "plan.gpkg", layer="redraw_grids")
    assert len(grids) == summary["redraw"]["grids"]
