"""Hand edits (``preview_edit``) respect locked grids and keep a building's households (楼栋) together.

Four 300 m × 300 m grids in UTM 51N: A (south-west), B (south-east, locked), C (north-west), D
(north-east), 36 households each on a lattice; building "3栋" is eleven households in a 100 m row in
A, and another "3栋" (another compound) stands in D."""

from __future__ import annotations

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import box

from gridmap.cells import cell_polygon
from gridmap.districting import LockedGrids, preview_edit, shape_grids
from gridmap.districting.address_buildings import building_ids, clean_label

UTM = "EPSG:32651"
X0, Y0 = 230_000.0, 3_350_000.0
SQUARES = {"A": (0, 0), "B": (300, 0), "C": (0, 300), "D": (300, 300)}
ROW = [(100.0 + 10 * i, 250.0) for i in range(11)]  # building 3栋 in A: 100 m long, several H3 cells


def _wgs(xy):
    return gpd.GeoSeries(gpd.points_from_xy([X0 + x for x, _ in xy], [Y0 + y for _, y in xy]), crs=UTM).to_crs(4326)


@pytest.fixture(scope="module")
def town():
    grids = gpd.GeoDataFrame({"grid_code": list(SQUARES), "community_code": "C1", "kind": "urban"},
                             geometry=[box(X0 + x, Y0 + y, X0 + x + 300, Y0 + y + 300) for x, y in SQUARES.values()],
                             crs=UTM).to_crs(4326)
    rows = []
    for code, (x, y) in SQUARES.items():
        for i in range(6):
            for j in range(6):
                rows.append((f"{code}-{i}{j}", code, None, x + 25 + 50 * i, y + 25 + 50 * j))
    rows += [(f"R-{k}", "A", "3栋", x, y) for k, (x, y) in enumerate(ROW)]
    rows += [(f"F-{k}", "D", " 3 ", 450.0 + 5 * k, 420.0) for k in range(4)]  # same label, another compound
    frame = pd.DataFrame(rows, columns=["household_id", "grid_code", "building", "x", "y"])
    homes = gpd.GeoDataFrame(frame[["household_id", "grid_code", "building"]],
                             geometry=_wgs(list(zip(frame["x"], frame["y"]))).values, crs=4326)
    return grids, homes


def _cell_at(x: float, y: float) -> str:
    p = _wgs([(x, y)]).iloc[0]
    return h3.latlng_to_cell(p.y, p.x, 10)


def test_an_edit_into_a_locked_grid_is_refused(town):
    grids, homes = town
    with pytest.raises(LockedGrids) as e:
        preview_edit(grids, homes, "B", cells=[_cell_at(280, 150)], locked=["B"])
    assert e.value.into and e.value.codes == ["B"]


def test_cells_or_areas_centred_in_a_locked_grid_are_refused(town):
    grids, homes = town
    cells = [_cell_at(450, 150), _cell_at(520, 100), _cell_at(150, 150)]
    assert list(shape_grids(grids, cells=cells)) == ["B", "B", "A"]
    with pytest.raises(LockedGrids) as e:
        preview_edit(grids, homes, "C", cells=cells, locked=["B"])
    assert not e.value.into and e.value.shapes == {"B": 2}
    area = _wgs([(450, 150)]).iloc[0].buffer(0.0006)  # ~60 m: households of B inside
    with pytest.raises(LockedGrids):
        preview_edit(grids, homes, "A", areas=[area], locked=["B"])
    assert len(preview_edit(grids, homes, "A", areas=[area]).moved) > 0  # unlocked, the same area moves


def test_edges_of_cells_over_a_locked_grid_stay_put(town):
    grids, homes = town
    b = grids.set_index("grid_code").geometry["B"]
    cells = [c for c in h3.h3shape_to_cells_experimental(h3.geo_to_h3shape(b.buffer(0.001)), 10, contain="overlap")
             if shape_grids(grids, cells=[c])[0] == "A" and cell_polygon(c).intersection(b).area > 1e-9]
    assert cells  # cells centred in A that reach into B
    free = preview_edit(grids, homes, "C", cells=cells)
    assert "B" in set(free.grids["grid_code"])  # without the lock, B would lose ground
    kept = preview_edit(grids, homes, "C", cells=cells, locked=["B"])
    assert "B" not in set(kept.grids["grid_code"]) and not kept.moved["from_grid"].eq("B").any()
    assert kept.locked_kept_m2 > 1.0 and any("locked grids" in t for t in kept.issues)
    b_m = gpd.GeoSeries([b], crs=4326).to_crs(UTM).iloc[0]
    c_after = gpd.GeoSeries([kept.grids.set_index("grid_code").geometry["C"]], crs=4326).to_crs(UTM).iloc[0]
    assert shapely.intersection(c_after, b_m).area < 0.01  # C gained nothing of B


def test_building_ids_chain_a_label_within_80_m():
    xy = np.array([[0, 0], [50, 0], [120, 0], [400, 0], [0, 10], [60, 10]], dtype=float)
    ids = building_ids(["3栋", "3", " 3 ", "3栋", None, "5"], xy)
    assert ids[0] == ids[1] == ids[2] and ids[3] != ids[0] and ids[4] == -1 and ids[5] not in (ids[0], ids[3])
    assert clean_label(" 3 幢") == "3" and clean_label("  ") is None and clean_label(float("nan")) is None


def test_a_cell_splitting_a_building_is_listed_and_whole_buildings_keeps_it_together(town):
    grids, homes = town
    row_cells = {_cell_at(x, y) for x, y in ROW}
    assert len(row_cells) >= 2  # the building spans several cells
    cell = _cell_at(*ROW[0])
    split = preview_edit(grids, homes, "C", cells=[cell])
    assert list(split.split_buildings["building"]) == ["3栋"]
    s = split.split_buildings.iloc[0]
    moving = {h for h in split.moved["household_id"] if h.startswith("R-")}
    assert s["households"] == 11 and s["moving"] == len(moving) and s["staying"] == {"A": 11 - len(moving)}
    assert 0 < len(moving) < 11 and any("3栋 would be split" in t for t in split.issues)

    whole = preview_edit(grids, homes, "C", cells=[cell], whole_buildings=True)
    assert whole.split_buildings.empty and whole.buildings_added == ["3栋"]
    assert {f"R-{k}" for k in range(11)} <= set(whole.moved["household_id"])
    assert not any(h.startswith("F-") for h in whole.moved["household_id"])  # the other compound's 3栋 stays


def test_a_building_moved_whole_is_not_split_and_unlabelled_households_never_are(town):
    grids, homes = town
    cells = sorted({_cell_at(x, y) for x, y in ROW})
    res = preview_edit(grids, homes, "C", cells=cells)
    assert res.split_buildings.empty or "3栋" not in set(res.split_buildings["building"])
    plain = preview_edit(grids, homes.assign(building=None), "C", cells=[cells[0]])
    assert plain.split_buildings.empty
