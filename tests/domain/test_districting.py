"""Grid redraw (网格划分) on small synthetic communities: bands, contiguity, exact tiling, codes,
minimal change, determinism, edit previews.

Domain tier: built data only (no database, no browser, no ../shared).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import LineString, Point, box

from gridmap.atoms import building_atoms, choose_h3_res, h3_atoms
from gridmap.compactness import polsby_popper
from gridmap.districting import STATUS_KEPT, grid_count, redraw

from districting_cases import _check_tiling, _community, _edit_fixture, _households, _metric


UTM = "EPSG:32651"
X0, Y0 = 230_000.0, 3_350_000.0  # Hangzhou, UTM 51N (metres)


# ---------------------------------------------------------------------------------------------
# counting


@pytest.mark.parametrize(
    "total, lo, hi, k, ok",
    [
        (250, 300, 500, 1, False),   # too small for any grid
        (300, 300, 500, 1, True),
        (550, 300, 500, 1, False),   # 1 grid is over, 2 are under: least violation is 2×275 (50) vs 550 (50) → fewer grids
        (600, 300, 500, 2, True),
        (1000, 300, 500, 3, True),   # 333 is closer to the 400 middle than 500
        (2000, 300, 500, 5, True),
        (150, 100, 200, 1, True),
        (90, 100, 200, 1, False),
    ],
)
def test_grid_count(total, lo, hi, k, ok):
    assert grid_count(total, lo, hi) == (k, ok)


def test_choose_h3_res_finer_when_dense():
    assert choose_h3_res(100, 1_000_000, 300) == 10
    assert choose_h3_res(20_000, 1_000_000, 300) == 11


# ---------------------------------------------------------------------------------------------
# atoms


def test_h3_atoms_tile_region_and_count_households():
    region = shapely.Polygon([(X0, Y0), (X0 + 800, Y0), (X0 + 800, Y0 + 400), (X0 + 400, Y0 + 400),
                              (X0 + 400, Y0 + 800), (X0, Y0 + 800)])
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 800, (3000, 2)) + [X0, Y0]
    xy = xy[shapely.contains_xy(region, xy[:, 0], xy[:, 1])]
    atoms, hh_atom = h3_atoms(region, UTM, xy, 11)
    assert abs(atoms.area.sum() - region.area) < 1e-3
    assert abs(shapely.union_all(atoms.geoms).area - region.area) < 1e-3
    assert atoms.weight.sum() == len(xy)
    assert np.all(hh_atom >= 0)
    assert np.all(shapely.contains_xy(atoms.geoms[hh_atom], xy[:, 0], xy[:, 1])
                  | shapely.intersects_xy(atoms.geoms[hh_atom], xy[:, 0], xy[:, 1]))
    # Shared lengths match GEOS on every touching pair, and every atom has a neighbour.
    i, j = atoms.touch[:, 0], atoms.touch[:, 1]
    geos = shapely.length(shapely.intersection(shapely.boundary(atoms.geoms[i]), shapely.boundary(atoms.geoms[j])))
    np.testing.assert_allclose(atoms.touch_len, geos, atol=1e-6)
    assert len(np.unique(atoms.contig)) == len(atoms)


def test_barrier_cuts_adjacency():
    region = box(X0, Y0, X0 + 600, Y0 + 600)
    river = LineString([(X0 + 300, Y0 - 10), (X0 + 300, Y0 + 610)])
    atoms, _ = h3_atoms(region, UTM, np.zeros((0, 2)), 11, barriers=[river])
    xy = atoms.xy
    i, j = atoms.contig[:, 0], atoms.contig[:, 1]
    crosses = (xy[i, 0] - (X0 + 300)) * (xy[j, 0] - (X0 + 300)) < 0
    assert not crosses.any()
    ti, tj = atoms.touch[:, 0], atoms.touch[:, 1]
    assert ((xy[ti, 0] - (X0 + 300)) * (xy[tj, 0] - (X0 + 300)) < 0).any()  # they do touch geometrically


def test_building_atoms_split_only_oversize_buildings():
    region = box(X0, Y0, X0 + 400, Y0 + 400)
    pts = np.array([[X0 + 100, Y0 + 100], [X0 + 300, Y0 + 100], [X0 + 200, Y0 + 300]])
    atoms, owner = building_atoms(region, pts, np.array([40, 60, 1200]), 500)
    assert abs(atoms.area.sum() - region.area) < 1e-3
    assert atoms.weight.sum() == 1300
    assert sorted(atoms.weight.tolist()) == [40, 60, 400, 400, 400]  # 1200 > 500: three equal territories
    assert (atoms.source == 2).sum() == 3 and len(np.unique(atoms.contig)) == len(atoms)
    assert atoms.weight[owner[0]] == 40 and atoms.weight[owner[1]] == 60


def test_fresh_redraw_bands_tiling_contiguity_codes(square):
    comm, hh, res = square
    g = _metric(res.grids)
    assert res.summary["in_band_pct"] == 100.0
    assert g["households"].between(300, 500).all()
    assert g["households"].sum() == 2000
    assert (g.geom_type == "Polygon").all()
    _check_tiling(g, _metric(comm).geometry.iloc[0])
    assert sorted(g["grid_code"]) == [f"330103001001{k:02d}" for k in range(1, len(g) + 1)]
    # Every household carries the code of the polygon containing it.
    hm = _metric(hh)
    for code, poly in zip(g["grid_code"], g.geometry):
        inside = hm[res.households == code]
        assert shapely.contains_xy(poly.buffer(0.01), inside.geometry.x, inside.geometry.y).all()
    np.testing.assert_allclose(g["polsby_popper"], polsby_popper(g.geometry.to_numpy()))
    assert g["polsby_popper"].mean() > 0.45
    assert res.issues == []


def test_redraw_is_deterministic_for_a_seed(square):
    comm, hh, res = square
    again = redraw(comm, hh, seed=7)
    assert again.grids["grid_code"].tolist() == res.grids["grid_code"].tolist()
    assert shapely.equals_exact(again.grids.geometry.to_numpy(), res.grids.geometry.to_numpy(), tolerance=0).all()
    assert again.households.equals(res.households)


def test_rural_band_from_kind():
    comm = _community(kind="rural")
    hh = _households(700, (X0, Y0, X0 + 1000, Y0 + 1000), seed=2)
    res = redraw(comm, hh)
    assert res.grids["households"].between(100, 200).all()
    assert (res.grids["kind"] == "rural").all()


def test_infeasible_community_is_reported():
    comm = _community(code="SQ-9")
    hh = _households(250, (X0, Y0, X0 + 1000, Y0 + 1000), seed=3)
    res = redraw(comm, hh)
    assert len(res.grids) == 1 and res.grids["households"].iloc[0] == 250
    assert not res.grids["in_band"].iloc[0]
    assert res.grids["grid_code"].iloc[0] == "SQ-9-01"
    assert [i["kind"] for i in res.issues] == ["infeasible"]
    assert "250 households" in res.issues[0]["message"] and "SQ-9" in res.summary["infeasible_communities"]


def test_barrier_is_respected():
    comm = _community()
    hh = pd.concat([
        _households(1000, (X0, Y0, X0 + 480, Y0 + 1000), seed=4),
        _households(1000, (X0 + 520, Y0, X0 + 1000, Y0 + 1000), seed=5, start=1000),
    ], ignore_index=True)
    river = gpd.GeoDataFrame(geometry=[LineString([(X0 + 500, Y0 - 50), (X0 + 500, Y0 + 1050)])], crs=UTM).to_crs("EPSG:4326")
    res = redraw(comm, hh, barriers=river, seed=1)
    assert res.summary["in_band_pct"] == 100.0
    east = _metric(hh).geometry.x.to_numpy() > X0 + 500
    for code in res.grids["grid_code"]:
        sides = set(east[(res.households == code).to_numpy()])
        assert len(sides) == 1, f"grid {code} straddles the river"


def test_buildings_never_split():
    comm = _community(w=800, h=800)
    rng = np.random.default_rng(11)
    centres = rng.uniform(30, 770, (60, 2)) + [X0, Y0]
    sizes = rng.integers(10, 60, 60)
    foot = [box(x - 10, y - 10, x + 10, y + 10) for x, y in centres]
    bld = gpd.GeoDataFrame({"building_id": [f"B{i}" for i in range(60)]}, geometry=foot, crs=UTM).to_crs("EPSG:4326")
    pts = np.repeat(centres, sizes, axis=0) + rng.uniform(-9, 9, (sizes.sum(), 2))
    hh = gpd.GeoDataFrame({"household_id": [f"H{i}" for i in range(len(pts))]},
                          geometry=gpd.points_from_xy(pts[:, 0], pts[:, 1]), crs=UTM).to_crs("EPSG:4326")
    res = redraw(comm, hh, buildings=bld, seed=0)
    assert res.summary["in_band_pct"] == 100.0
    owner = np.repeat(np.arange(60), sizes)
    df = pd.DataFrame({"b": owner, "code": res.households.to_numpy()})
    assert (df.groupby("b")["code"].nunique() == 1).all()
    assert (df.groupby("b")["code"].first().to_numpy() == res.buildings.to_numpy()).all()
    _check_tiling(_metric(res.grids), _metric(comm).geometry.iloc[0])


def test_buildings_without_household_points_use_their_counts():
    comm = _community(w=600, h=600)
    rng = np.random.default_rng(5)
    centres = rng.uniform(20, 580, (40, 2)) + [X0, Y0]
    bld = gpd.GeoDataFrame({"households": rng.integers(20, 50, 40)},
                           geometry=[Point(x, y).buffer(8) for x, y in centres], crs=UTM).to_crs("EPSG:4326")
    res = redraw(comm, buildings=bld, seed=0)
    assert res.grids["households"].sum() == bld["households"].sum()
    assert res.summary["in_band_pct"] == 100.0
    totals = bld.groupby(res.buildings.to_numpy())["households"].sum()
    assert totals.to_dict() == dict(zip(res.grids["grid_code"], res.grids["households"]))


def test_minimal_change_keeps_in_band_grids_and_counts_moves(square):
    comm, hh, first = square
    current = first.grids[["grid_code", "geometry"]]
    # 300 more households inside one grid makes it over-size; everything else stays in band.
    target = _metric(first.grids).sort_values("grid_code").iloc[0]
    x0, y0, x1, y1 = target.geometry.bounds
    extra = _households(1500, (x0, y0, x1, y1), seed=9, start=5000)
    extra = extra[shapely.contains_xy(target.geometry, *_metric(extra).geometry.get_coordinates().to_numpy().T)].iloc[:300]
    hh2 = pd.concat([hh, extra], ignore_index=True)
    n0 = len(hh)
    res = redraw(comm, hh2, current=current, seed=7)
    g = res.grids.set_index("grid_code")
    before = first.grids.set_index("grid_code")
    for code in before.index:
        if code == target.grid_code:
            continue
        assert g.loc[code, "status"] == STATUS_KEPT
        after_m = _metric(gpd.GeoSeries([g.loc[code, "geometry"]], crs="EPSG:4326")).iloc[0]
        before_m = _metric(gpd.GeoSeries([before.loc[code, "geometry"]], crs="EPSG:4326")).iloc[0]
        assert shapely.equals_exact(g.loc[code, "geometry"], before.loc[code, "geometry"], tolerance=1e-9) or \
            shapely.symmetric_difference(after_m, before_m).area < 0.01
        assert (res.households.iloc[:n0][first.households.to_numpy() == code] == code).all()
        assert g.loc[code, "moved"] == 0
    assert res.summary["in_band_pct"] == 100.0
    assert g.loc[target.grid_code, "status"] == "redrawn"
    assert len(res.grids) == len(first.grids) + 1
    # Moved = households whose grid changed; all come from the split grid.
    old = np.r_[first.households.to_numpy(), [target.grid_code] * len(extra)]
    moved = int((res.households.to_numpy() != old).sum())
    assert res.summary["moved"] == moved
    assert 0 < moved <= (target.households + len(extra)) // 2 + 50
    _check_tiling(_metric(res.grids), _metric(comm).geometry.iloc[0])


def test_preview_edit_moves_ground_and_households(square):
    from gridmap.districting import preview_edit

    grids, households, a, b, band_m, area = _edit_fixture(square)
    res = preview_edit(grids, households, a, areas=[area])
    g = res.grids.set_index("grid_code")
    assert res.grids["grid_code"].iloc[0] == a and b in g.index
    hm = _metric(households)
    inside = shapely.intersects_xy(band_m.buffer(-0.01), hm.geometry.x, hm.geometry.y) & (households["grid_code"] == b).to_numpy()
    assert set(res.moved["household_id"]) >= set(households.loc[inside, "household_id"])
    assert (res.moved["from_grid"] == b).all() and (res.moved["to_grid"] == a).all()
    assert g.loc[a, "households"] == g.loc[a, "households_before"] + len(res.moved)
    assert g.loc[b, "households"] == g.loc[b, "households_before"] - len(res.moved)
    gm = _metric(res.grids).set_index("grid_code")
    before = _metric(grids).set_index("grid_code")
    assert abs(gm.loc[a].geometry.area - before.loc[a].geometry.area - band_m.area) < 1.0
    assert abs(gm.loc[b].geometry.area - before.loc[b].geometry.area + band_m.area) < 1.0
    assert bool(g.loc[a, "contiguous"]) and 0 < g.loc[a, "polsby_popper"] <= 1
    assert res.issues == []


def test_preview_edit_ignores_ground_outside_the_community(square):
    from gridmap.cells import points_to_cells
    from gridmap.districting import preview_edit

    grids, households, a, _, _, _ = _edit_fixture(square)
    far = gpd.GeoSeries([Point(X0 + 5000, Y0 + 5000)], crs=UTM).to_crs("EPSG:4326").iloc[0]
    cell = int(points_to_cells([far.x], [far.y])[0])
    res = preview_edit(grids, households, a, cells=[cell])
    assert len(res.moved) == 0 and "outside community" in res.issues[0]
    with pytest.raises(ValueError):
        preview_edit(grids, households, "NOPE", cells=[cell])
