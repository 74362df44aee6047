"""`gridmap nearest` on files against the independent brute force."""

from __future__ import annotations

import re

import geopandas as gpd

from reference import brute_force_nearest

from dispatch_cases import random_members

LON0, LAT0 = 120.17, 30.28  # Hangzhou


def test_cli_nearest_on_files(tmp_path):
    from typer.testing import CliRunner

    from api.cli import app

    ids, lon, lat, skills, avail = random_members(400, seed=9)
    gdf = gpd.GeoDataFrame({"member_id": ids, "skills": [",".join(s) for s in skills], "available": avail},
                           geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    path = tmp_path / "members.geojson"
    gdf.to_file(path, driver="GeoJSON")
    at = (LON0 + 0.003, LAT0 - 0.002)
    r = CliRunner().invoke(app, ["nearest", "--members", str(path), "--at", f"{at[0]},{at[1]}", "--skill", "法律",
                                 "-k", "4"], terminal_width=200)
    assert r.exit_code == 0, r.output
    want = brute_force_nearest(*at, ids, lon, lat, skills, avail, k=4, skill="法律")
    shown = re.findall(r"(M\d{5})", r.output)
    assert shown == [w[0] for w in want]
    assert f"{want[0][1]:,.1f}" in r.output
    r = CliRunner().invoke(app, ["nearest", "--members", str(path), "--at", "30.28,120.17"])
    assert r.exit_code != 0
