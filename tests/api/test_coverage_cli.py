"""`gridmap gaps` from the command line (straight-line and walking)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np

from gridmap.coverage import (
    grid_status,
)
from gridmap.metric import haversine_m


# --- command line ------------------------------------------------------------------------------

def _write(tmp_path, **layers):
    from geodata.io import write_layer

    paths = {}
    for name, gdf in layers.items():
        paths[name] = tmp_path / f"{name}.geojson"
        write_layer(gdf, paths[name])
    return paths


def test_cli_gaps_straight(tmp_path, scenario):
    import pyogrio
    from typer.testing import CliRunner

    from api.cli import app

    grids = scenario["grids"].iloc[:40]
    codes = set(grids["grid_code"])
    hh = scenario["households"][scenario["households"]["grid_code"].isin(codes)]
    mm = scenario["members"][scenario["members"]["grid_code"].isin(codes)]
    centres = scenario["centres"].iloc[:6].drop(columns="radius_m")  # --radius applies to centres without one
    p = _write(tmp_path, grids=grids, households=hh, members=mm, centres=centres)
    out = tmp_path / "gaps.gpkg"
    r = CliRunner().invoke(app, ["gaps", "--grids", str(p["grids"]), "--households", str(p["households"]),
                                 "--members", str(p["members"]), "--centres", str(p["centres"]),
                                 "--radius", "700", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert {n for n, _ in pyogrio.list_layers(out)} == {"grid_status", "unlinked_households", "service_areas",
                                                        "gap_cells"}
    st = gpd.read_file(out, layer="grid_status")
    want = grid_status(grids, hh, mm)
    assert st.set_index("grid_code")["blank"].astype(bool).to_dict() == want.set_index("grid_code")["blank"].to_dict()
    cells = gpd.read_file(out, layer="gap_cells")
    d = haversine_m(hh.geometry.x.to_numpy()[:, None], hh.geometry.y.to_numpy()[:, None],
                    centres.geometry.x.to_numpy()[None], centres.geometry.y.to_numpy()[None])
    assert cells["households"].sum() == int((d.min(axis=1) > 700.0).sum())
    assert "blank grids" in r.output and "within straight-line circle" in r.output
    ul = gpd.read_file(out, layer="unlinked_households")
    assert len(ul) == int(want["unlinked_households"].sum())
    assert not {"name", "phone", "id_number"} & set(ul.columns)


def test_cli_gaps_walking_and_sites(tmp_path, shanghai):
    import pyogrio
    from typer.testing import CliRunner

    from api.cli import app
    from geodata.io import read_layer
    from gridmap.census import cell_grids
    from gridmap.walknet import build_walk_network

    sample = Path(__file__).resolve().parents[2] / "geodata" / "sample_data" / "shanghai_bund"
    hh = read_layer(sample / "households.geojson", "households")
    mm = read_layer(sample / "members.geojson", "members")
    centres = read_layer(sample / "service_centres.geojson", "service_centres")
    grids = cell_grids(hh)
    p = _write(tmp_path, grids=grids, households=hh.drop(columns="grid_code"), members=mm.drop(columns="grid_code"),
               centres=centres)
    out = tmp_path / "gaps.gpkg"
    runner = CliRunner()
    r = runner.invoke(app, ["gaps", "--grids", str(p["grids"]), "--households", str(p["households"]),
                            "--members", str(p["members"]), "--centres", str(p["centres"]),
                            "--roads", str(shanghai / "roads.geojson"), "--walk-minutes", "10", "--out", str(out)])
    assert r.exit_code == 0, r.output
    areas = gpd.read_file(out, layer="service_areas")
    assert sorted(areas["basis"].value_counts().to_dict().items()) == [("straight", len(centres)),
                                                                        ("walking", len(centres))]
    cells = gpd.read_file(out, layer="gap_cells")
    net = build_walk_network(gpd.read_file(shanghai / "roads.geojson"))
    walk = net.point_distances(net.points_xy(centres), net.points_xy(hh), 800.0, min_only=True)
    assert (cells["basis"] == "walking").all()
    assert cells["households"].sum() == int((~np.isfinite(walk)).sum())
    assert "within walking circle" in r.output
    # sites: 8 candidate POIs, k = 2, walking; the answer equals a brute force over all pairs
    pois = gpd.read_file(shanghai / "pois.geojson").iloc[::60].reset_index(drop=True).iloc[:8]
    cands = gpd.GeoDataFrame({"centre_id": [f"P{i}" for i in range(len(pois))]}, geometry=pois.geometry.values,
                             crs=4326)
    pc = _write(tmp_path, candidates=cands)
    sites_out = tmp_path / "sites.geojson"
    r = runner.invoke(app, ["sites", "--candidates", str(pc["candidates"]), "--households", str(p["households"]),
                            "--centres", str(p["centres"]), "--k", "2", "--roads", str(shanghai / "roads.geojson"),
                            "--walk-minutes", "10", "--out", str(sites_out)])
    assert r.exit_code == 0, r.output
    sites = gpd.read_file(sites_out)
    uncovered = ~np.isfinite(walk)
    reach = np.isfinite(net.point_distances(net.points_xy(cands), net.points_xy(hh), 800.0))[:, uncovered]
    best = max((reach[a] | reach[b]).sum() for a in range(len(cands)) for b in range(a + 1, len(cands)))
    assert len(sites) == 2 and sites["newly_covered"].sum() == best
    assert "optimal: True" in r.output
    assert {n for n, _ in pyogrio.list_layers(sites_out)}
