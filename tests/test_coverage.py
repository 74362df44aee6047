"""Coverage gaps on the real Hangzhou grids: blank grids, unlinked households, service circles, gap cells."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest

from gridmap.census import locate_in_grids
from gridmap.coverage import (
    BLANK_BOTH,
    BLANK_NO_BRANCH,
    BLANK_NO_MEMBERS,
    UNLINKED_FULL,
    UNLINKED_NO_GRID,
    UNLINKED_NO_MEMBER,
    UNLINKED_NOT_LINKED,
    UNLINKED_TOO_FAR,
    blank_grid_counts,
    coverage_summary,
    gap_areas,
    gap_cells,
    grid_status,
    rollup,
    straight_line_areas,
    straight_line_coverage,
    unlinked_cells,
    unlinked_households,
)
from gridmap.metric import EARTH_RADIUS_M, haversine_m


@pytest.fixture(scope="module")
def scenario(hangzhou_grids):
    """Real grids with synthesised households; branch and members removed from chosen grids.

    Built deterministically so the expected blank grids are known by construction: every grid
    outside ``strip_members`` is given at least one member, every grid outside ``strip_branch``
    has a branch.
    """
    from geodata.synth import synth_in_grids

    s = synth_in_grids(hangzhou_grids, seed=7, no_member_share=0.0, no_branch_share=0.0)
    grids = s["grids"].copy()
    hh = s["households"]
    codes = np.sort(grids["grid_code"].unique())
    rng = np.random.default_rng(3)
    pick = rng.choice(len(codes), 30, replace=False)
    strip_branch = set(codes[pick[:10]])
    strip_members = set(codes[pick[10:20]])
    both = set(codes[pick[20:30]])
    grids["has_branch"] = ~grids["grid_code"].isin(strip_branch | both)
    members = s["members"][~s["members"]["grid_code"].isin(strip_members | both)]
    # every other grid with households gets one member at its first household
    have = set(members["grid_code"])
    extra = hh[~hh["grid_code"].isin(have | strip_members | both)].drop_duplicates("grid_code")
    add = gpd.GeoDataFrame({"member_id": [f"X{i:04d}" for i in range(len(extra))],
                            "grid_code": extra["grid_code"].to_numpy()}, geometry=extra.geometry.values, crs=4326)
    members = pd.concat([members[["member_id", "grid_code", "geometry"]], add], ignore_index=True)
    members = gpd.GeoDataFrame(members, geometry="geometry", crs=4326)
    return {"grids": grids, "households": hh, "members": members, "centres": s["service_centres"],
            "strip_branch": strip_branch, "strip_members": strip_members, "both": both}


def test_blank_grids_exactly_with_reasons(scenario):
    st = grid_status(scenario["grids"], scenario["households"], scenario["members"])
    assert len(st) == len(scenario["grids"])
    blank = st[st["blank"]].set_index("grid_code")["blank_reason"].to_dict()
    hh_grids = set(scenario["households"]["grid_code"])
    expected = {c: BLANK_NO_BRANCH for c in scenario["strip_branch"]}
    expected.update({c: BLANK_NO_MEMBERS for c in scenario["strip_members"] if c in hh_grids})
    expected.update({c: (BLANK_BOTH if c in hh_grids else BLANK_NO_BRANCH) for c in scenario["both"]})
    assert blank == expected
    assert st.loc[~st["blank"], "blank_reason"].isna().all()
    counts = blank_grid_counts(st)
    assert sum(counts.values()) == len(expected)
    assert counts[BLANK_BOTH] == sum(1 for v in expected.values() if v == BLANK_BOTH)


def test_grid_status_columns_are_consistent(scenario):
    st = grid_status(scenario["grids"], scenario["households"], scenario["members"])
    hh_count = scenario["households"]["grid_code"].value_counts()
    mm_count = scenario["members"]["grid_code"].value_counts()
    for row in st.itertuples():
        assert row.households == hh_count.get(row.grid_code, 0)
        assert row.members == mm_count.get(row.grid_code, 0)
        assert row.members_needed == max(0, math.ceil(row.households / 10) - row.members)
        assert 0 <= row.linked_households <= row.households
        expected_size = "over-size" if row.households > row.band_max else (
            "under-size" if row.households < row.band_min else "ok")
        assert row.size_status == expected_size
    # without links the estimate caps each grid at members × 10 and needs a member in the grid
    cap = np.minimum(st["households"], st["members"] * 10)
    assert (st["linked_households"] == cap).all()


def test_unlinked_from_links_with_reasons(scenario):
    hh = scenario["households"]
    mm = scenario["members"]
    first_member = mm.drop_duplicates("grid_code").set_index("grid_code")["member_id"]
    links = pd.DataFrame({"household_id": hh["household_id"], "member_id": hh["grid_code"].map(first_member)})
    links = links.dropna()
    # drop every 7th link, mark some as very long
    dropped = links.iloc[::7]
    links = links.drop(dropped.index)
    links["distance_m"] = 100.0
    far_ids = set(links["household_id"].iloc[::11])
    links.loc[links["household_id"].isin(far_ids), "distance_m"] = 5000.0
    ul = unlinked_households(hh, mm, links, max_link_distance_m=1000.0)
    got = ul.set_index("household_id")["reason"].to_dict()
    no_member_grids = scenario["strip_members"] | scenario["both"]
    expected = {h: UNLINKED_NO_MEMBER for h, g in zip(hh["household_id"], hh["grid_code"]) if g in no_member_grids}
    expected.update({h: UNLINKED_NOT_LINKED for h in dropped["household_id"]})
    expected.update({h: UNLINKED_TOO_FAR for h in far_ids})
    assert got == expected
    st = grid_status(scenario["grids"], hh, mm, links, max_link_distance_m=1000.0)
    assert st["unlinked_households"].sum() == len(expected)
    # H3 res 10 of each returned household
    row = ul.iloc[0]
    assert h3.str_to_int(h3.latlng_to_cell(row.geometry.y, row.geometry.x, 10)) == row["h3"]



def test_unlinked_reasons_match_the_linkage_engine():
    # One vocabulary: coverage and the linkage engine give the same contract code for the same
    # situation (they used to say "members full"/"outside every grid" vs "all full"/"no grid").
    from gridmap.contract import UNLINKED_LABELS
    from gridmap.linkage import link_households

    lon0, lat0 = 120.17, 30.28
    hh = gpd.GeoDataFrame({"household_id": [f"h{i}" for i in range(13)] + ["lost"], "grid_code": ["G"] * 13 + [None]},
                          geometry=gpd.points_from_xy(lon0 + 0.0005 * np.arange(14), np.full(14, lat0)), crs=4326)
    mm = gpd.GeoDataFrame({"member_id": ["m"], "grid_code": ["G"]}, geometry=gpd.points_from_xy([lon0], [lat0]), crs=4326)
    estimated = unlinked_households(hh, mm).set_index("household_id")["reason"]
    engine = link_households(hh, mm).unlinked.set_index("household_id")["reason"]
    assert engine.to_dict() == estimated.to_dict()
    assert set(engine) == {UNLINKED_FULL, UNLINKED_NO_GRID} and set(engine) <= set(UNLINKED_LABELS)

def test_estimated_links_capacity_and_distance():
    # one grid, one member, 15 households on a line east of the member, 50 m apart
    lon0, lat0 = 120.17, 30.28
    dlon = 50.0 / (math.radians(1) * EARTH_RADIUS_M * math.cos(math.radians(lat0)))
    hh = gpd.GeoDataFrame({"household_id": [f"h{i}" for i in range(15)], "grid_code": "G"},
                          geometry=gpd.points_from_xy(lon0 + dlon * np.arange(1, 16), np.full(15, lat0)), crs=4326)
    mm = gpd.GeoDataFrame({"member_id": ["m"], "grid_code": ["G"]}, geometry=gpd.points_from_xy([lon0], [lat0]), crs=4326)
    ul = unlinked_households(hh, mm, max_link_distance_m=420.0)
    got = ul.set_index("household_id")["reason"].to_dict()
    # nearest 10 keep the member; of those, numbers 9 and 10 (450 m, 500 m) are too far
    assert got == {**{f"h{i}": UNLINKED_FULL for i in range(10, 15)}, "h8": UNLINKED_TOO_FAR, "h9": UNLINKED_TOO_FAR}
    assert ul.set_index("household_id").loc["h9", "distance_m"] == pytest.approx(500.0, rel=1e-3)


def test_straight_line_coverage_matches_brute_force(scenario):
    hh = scenario["households"]
    centres = scenario["centres"].copy()
    rng = np.random.default_rng(5)
    centres["radius_m"] = rng.choice([500.0, 800.0, 1000.0, np.nan], len(centres))
    cov = straight_line_coverage(hh, centres, radius_m=900.0)
    lon, lat = hh.geometry.x.to_numpy(), hh.geometry.y.to_numpy()
    clon, clat = centres.geometry.x.to_numpy(), centres.geometry.y.to_numpy()
    radius = np.where(np.isfinite(centres["radius_m"]), centres["radius_m"], 900.0)
    covered = np.zeros(len(hh), bool)
    nearest = np.full(len(hh), np.inf)
    for j in range(len(centres)):  # brute force: every household against every centre
        d = haversine_m(lon, lat, clon[j], clat[j])
        covered |= d <= radius[j]
        nearest = np.minimum(nearest, d)
    assert 0 < covered.sum() < len(hh)
    assert (cov["covered"].to_numpy() == covered).all()
    np.testing.assert_allclose(cov["nearest_centre_m"].to_numpy(), nearest, rtol=0, atol=1e-6)


def _destination(lon, lat, bearing_deg, dist_m):
    """Point ``dist_m`` metres from (lon, lat) on the haversine sphere (independent of the code under test)."""
    d = dist_m / EARTH_RADIUS_M
    b = math.radians(bearing_deg)
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(l2), math.degrees(p2)


def test_straight_line_boundary_is_exact_to_centimetres():
    c = (120.17, 30.28)
    pts, expect = [], []
    for bearing in range(0, 360, 15):
        for dist, inside in ((999.98, True), (1000.02, False)):
            pts.append(_destination(*c, bearing, dist))
            expect.append(inside)
    hh = gpd.GeoDataFrame({"household_id": range(len(pts))}, geometry=gpd.points_from_xy(*zip(*pts)), crs=4326)
    centres = gpd.GeoDataFrame({"centre_id": ["c"]}, geometry=gpd.points_from_xy([c[0]], [c[1]]), crs=4326)
    cov = straight_line_coverage(hh, centres)
    assert cov["covered"].tolist() == expect


def test_many_centres_near_a_household_fall_back_to_full_check():
    # 8 centres with small radius around a point, all near it, only the 8th (farthest) has a big radius
    c = (120.17, 30.28)
    pos = [_destination(*c, 45 * i, 100 + i) for i in range(8)]
    centres = gpd.GeoDataFrame({"centre_id": [f"c{i}" for i in range(8)], "radius_m": [50.0] * 7 + [300.0]},
                               geometry=gpd.points_from_xy(*zip(*pos)), crs=4326)
    hh = gpd.GeoDataFrame({"household_id": [1]}, geometry=gpd.points_from_xy([c[0]], [c[1]]), crs=4326)
    assert straight_line_coverage(hh, centres, k=2)["covered"].tolist() == [True]
    centres.loc[7, "radius_m"] = 50.0
    assert straight_line_coverage(hh, centres, k=2)["covered"].tolist() == [False]


def test_service_circles_have_their_radius(scenario):
    centres = scenario["centres"].iloc[:5].copy()
    areas = straight_line_areas(centres, 1000.0).to_crs(32651)
    for geom, c in zip(areas.geometry, centres.to_crs(32651).geometry):
        d = np.hypot(*(np.asarray(geom.exterior.coords) - [c.x, c.y]).T)
        assert d.max() == pytest.approx(1000.0, abs=0.01)


def test_gap_cells_count_and_merge(scenario):
    hh = scenario["households"]
    cov = straight_line_coverage(hh, scenario["centres"], 600.0)
    out = ~cov["covered"].to_numpy()
    cells = gap_cells(hh, out, res=9)
    assert cells["households"].sum() == out.sum()
    # independent per-cell count
    ll = hh[out]
    manual = pd.Series([h3.str_to_int(h3.latlng_to_cell(y, x, 9)) for x, y in zip(ll.geometry.x, ll.geometry.y)])
    assert cells.set_index("h3")["households"].to_dict() == manual.value_counts().to_dict()
    # gap areas: cells of one gap are connected, cells of different gaps never touch
    gid = cells.set_index("h3")["gap_id"].to_dict()
    for c, g in gid.items():
        for nb in h3.grid_ring(h3.int_to_str(c), 1):
            j = h3.str_to_int(nb)
            if j in gid:
                assert gid[j] == g
    totals = cells.groupby("gap_id")["households"].sum()
    assert (cells["gap_households"] == cells["gap_id"].map(totals)).all()
    assert list(totals.sort_values(ascending=False).index)[0] == 1
    areas = gap_areas(cells)
    assert areas["households"].sum() == out.sum()
    assert len(areas) == cells["gap_id"].nunique()


def test_rollup_and_summary(scenario):
    grids = scenario["grids"].copy()
    if "community_code" not in grids.columns:
        grids["community_code"] = grids["grid_code"].str.rsplit("-", n=1).str[0]
    st = grid_status(grids, scenario["households"], scenario["members"])
    by = rollup(st, "community_code")
    assert by["households"].sum() == st["households"].sum()
    assert by["blank_grids"].sum() == st["blank"].sum()
    assert by["grids"].sum() == len(st)
    cov = straight_line_coverage(scenario["households"], scenario["centres"])
    s = coverage_summary(st, cov)
    assert s["blank_grids"] == int(st["blank"].sum())
    assert s["within_straight_pct"] == round(100 * cov["covered"].mean(), 2)


def test_grid_codes_filled_by_point_in_polygon(scenario):
    hh = scenario["households"].drop(columns="grid_code").iloc[:2000]
    st = grid_status(scenario["grids"], hh, scenario["members"])
    located = locate_in_grids(hh, scenario["grids"]).value_counts()
    assert st.set_index("grid_code")["households"].sum() == located.sum()


# --- HTTP API on the PostGIS store ---------------------------------------------------------------

@pytest.fixture()
def api_store(engine, scenario, hangzhou):
    """The scenario of street SQ (and its neighbours' centres) imported into a fresh store."""
    from geodata.io import read_layer
    from geodata.store.importer import import_layer

    streets = read_layer(hangzhou / "streets.geojson", "streets", fix=True)
    comms = read_layer(hangzhou / "communities.geojson", "communities", fix=True)
    grids = scenario["grids"].copy()
    grids["community_code"] = grids["grid_code"].str.rsplit("-", n=1).str[0]
    sq = grids["grid_code"].str.startswith("SQ-")
    hh = scenario["households"]
    hh = hh[hh["grid_code"].isin(set(grids.loc[sq, "grid_code"]))]
    mm = scenario["members"]
    mm = mm[mm["grid_code"].isin(set(grids.loc[sq, "grid_code"]))]
    import_layer(engine, "streets", streets)
    import_layer(engine, "communities", comms)
    import_layer(engine, "grids", grids)
    import_layer(engine, "households", hh)
    import_layer(engine, "members", mm)
    import_layer(engine, "service_centres", scenario["centres"])
    return {"grids": grids[sq], "households": hh, "members": mm, "centres": scenario["centres"]}


@pytest.fixture()
def client(db_url, engine):
    from fastapi.testclient import TestClient

    from api.app import create_app

    return TestClient(create_app(db_url))


def _token(engine, role="leader", regions=("*",)):
    from geodata.store import auth

    _, tok = auth.create_token(engine, role, list(regions))
    return {"Authorization": f"Bearer {tok}"}


@pytest.mark.db
def test_coverage_route_figures(client, engine, api_store):
    r = client.get("/coverage", params={"region": "SQ"}, headers=_token(engine, "viewer", ["SQ"]))
    assert r.status_code == 200, r.text
    body = r.json()
    want = grid_status(api_store["grids"], api_store["households"], api_store["members"]).set_index("grid_code")
    got = {g["grid_code"]: g for g in body["grids"]}
    assert set(got) == set(want.index)
    for code, g in got.items():
        assert g["households"] == want.loc[code, "households"]
        assert g["members"] == want.loc[code, "members"]
        assert g["blank_reason"] == want.loc[code, "blank_reason"]
        assert g["linked_households"] == want.loc[code, "linked_households"]
    assert body["summary"]["blank_grids"] == int(want["blank"].sum())
    assert sum(c["households"] for c in body["communities"]) == len(api_store["households"])
    assert [s["street_code"] for s in body["streets"]] == ["SQ"]
    hh = api_store["households"]
    cov = straight_line_coverage(hh, api_store["centres"])
    assert body["streets"][0]["covered_straight"] == int(cov["covered"].sum())


@pytest.mark.db
def test_gaps_route_geojson(client, engine, api_store):
    r = client.get("/gaps", params={"region": "SQ", "gap_res": 10}, headers=_token(engine))
    assert r.status_code == 200, r.text
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    layers = pd.Series([f["properties"]["layer"] for f in fc["features"]])
    blank = {f["properties"]["grid_code"]: f["properties"]["blank_reason"] for f in fc["features"]
             if f["properties"]["layer"] == "blank_grid"}
    st = grid_status(api_store["grids"], api_store["households"], api_store["members"])
    assert blank == st[st["blank"]].set_index("grid_code")["blank_reason"].to_dict()
    hh = api_store["households"]
    # brute force: every centre (those beyond the 1,500 m margin cannot reach a household within 1,000 m)
    c = api_store["centres"]
    d = haversine_m(hh.geometry.x.to_numpy()[:, None], hh.geometry.y.to_numpy()[:, None],
                    c.geometry.x.to_numpy()[None], c.geometry.y.to_numpy()[None])
    outside = int((d.min(axis=1) > 1000.0).sum())
    assert sum(f["properties"]["households"] for f in fc["features"] if f["properties"]["layer"] == "gap_cell") == outside
    unl = sum(f["properties"]["households"] for f in fc["features"] if f["properties"]["layer"] == "unlinked_cell")
    assert unl == int(st["unlinked_households"].sum())
    assert "name" not in str(fc["features"][-1]["properties"])  # no personal data
    assert layers.isin(["blank_grid", "gap_cell", "unlinked_cell"]).all()


@pytest.mark.db
def test_coverage_routes_refuse_other_regions_and_unknown(client, engine, api_store):
    h = _token(engine, "leader", ["DX"])
    assert client.get("/coverage", params={"region": "SQ"}, headers=h).status_code == 404
    assert client.get("/gaps", params={"region": "SQ"}, headers=h).status_code == 404
    assert client.get("/coverage", params={"region": "SQ"}).status_code == 401
    assert client.get("/coverage", params={"region": "NOPE"}, headers=_token(engine)).status_code == 404


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

    sample = Path(__file__).resolve().parents[1] / "geodata" / "sample_data" / "shanghai_bund"
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


def test_unlinked_cells_count_by_reason(scenario):
    ul = unlinked_households(scenario["households"], scenario["members"])
    cells = unlinked_cells(ul, res=9)
    assert cells["households"].sum() == len(ul)
    reasons = [c for c in cells.columns if c not in ("h3", "households", "geometry")]
    assert set(reasons) == set(ul["reason"])
    assert (cells[reasons].sum(axis=1) == cells["households"]).all()
    manual = pd.Series([h3.str_to_int(h3.latlng_to_cell(p.y, p.x, 9)) for p in ul.geometry]).value_counts()
    assert cells.set_index("h3")["households"].to_dict() == manual.to_dict()
