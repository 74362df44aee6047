"""Redrawn grids hold their buildings whole (issue 11, finding 10): counts equal a point-in-polygon recount.

Households are placed inside building footprints; a redraw with those buildings must report, for
every grid, exactly the households its polygon contains, and no building may be split between grids
(except where a community boundary cuts it: grids never cross communities).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import Polygon, box

from gridmap.districting import redraw

from redraw_cases import _check_whole_and_recount, _points_inside


UTM = "EPSG:32651"
X0, Y0 = 230_000.0, 3_350_000.0


def _hard_footprints():
    """Long slabs, L-shapes, courtyards, and slabs crossing where point-Voronoi borders would run."""
    feet = []
    for k in range(6):  # slabs 200 m × 12 m, close together
        feet.append(box(X0 + 50, Y0 + 40 + 30 * k, X0 + 250, Y0 + 52 + 30 * k))
    for k in range(4):  # L-shapes
        x, y = X0 + 320 + 70 * k, Y0 + 60
        feet.append(Polygon([(x, y), (x + 50, y), (x + 50, y + 12), (x + 12, y + 12), (x + 12, y + 90), (x, y + 90)]))
    for k in range(3):  # courtyard blocks (a hole) with a small building inside the courtyard
        x, y = X0 + 80 + 140 * k, Y0 + 320
        feet.append(box(x, y, x + 100, y + 100).difference(box(x + 15, y + 15, x + 85, y + 85)))
        feet.append(box(x + 40, y + 40, x + 60, y + 60))
    feet.append(box(X0 + 20, Y0 + 250, X0 + 580, Y0 + 262))  # a 560 m slab across the middle
    return np.array(feet, dtype=object)


def test_hard_footprints_whole_and_counts_equal_recount():
    comm = gpd.GeoDataFrame({"code": ["SQ-1"]}, geometry=[box(X0, Y0, X0 + 600, Y0 + 600)], crs=UTM)
    feet = _hard_footprints()
    rng = np.random.default_rng(1)
    counts = np.maximum(20, (shapely.area(feet) / 25).astype(int))
    xy = _points_inside(feet, counts, rng)
    hh = gpd.GeoDataFrame({"household_id": np.arange(len(xy))}, geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=UTM)
    bld = gpd.GeoDataFrame(geometry=list(feet), crs=UTM)
    res = redraw(comm.to_crs(4326), hh.to_crs(4326), buildings=bld.to_crs(4326), minimal_change=False, seed=0)
    assert res.summary["households"] == len(xy)
    _check_whole_and_recount(res, comm.geometry.to_numpy(), feet, hh.geometry.to_numpy())


def _terraces():
    """Rows of terraced houses sharing party walls whose corners lie off the 1 mm grid (as in OSM), a
    slab touching a tower, and a row of houses along a tower above the band."""
    feet, x_off = [], 0.123456789  # walls between 1 mm steps: a 1 mm-snapped boundary would cut a sliver
    for row in range(4):
        y = Y0 + 40 + 45 * row + x_off
        for k in range(12):
            x = X0 + 40 + 37.3 * k + x_off
            feet.append(box(x, y, x + 37.3, y + 24.7))
    feet.append(box(X0 + 40 + x_off, Y0 + 260, X0 + 300, Y0 + 275))  # slab ...
    feet.append(box(X0 + 300, Y0 + 250 + x_off, X0 + 340, Y0 + 290))  # ... touching a tower
    return np.array(feet, dtype=object)


def test_terraced_footprints_whole_and_counts_equal_recount():
    comm = gpd.GeoDataFrame({"code": ["SQ-1"]}, geometry=[box(X0, Y0, X0 + 600, Y0 + 600)], crs=UTM)
    feet = _terraces()
    rng = np.random.default_rng(2)
    counts = (shapely.area(feet) / 25).astype(int)  # 36 per house: a row of 12 holds 432
    xy = _points_inside(feet, counts, rng)
    hh = gpd.GeoDataFrame({"household_id": np.arange(len(xy))}, geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=UTM)
    bld = gpd.GeoDataFrame(geometry=list(feet), crs=UTM)
    res = redraw(comm.to_crs(4326), hh.to_crs(4326), buildings=bld.to_crs(4326), minimal_change=False, seed=0)
    _check_whole_and_recount(res, comm.geometry.to_numpy(), feet, hh.geometry.to_numpy())


def test_tower_above_band_sliced_and_neighbours_whole():
    """A 1,200-household tower is cut in slices of at most the band's maximum; the smaller buildings
    around it, and one touching it, stay whole; counts equal the recount."""
    comm = gpd.GeoDataFrame({"code": ["SQ-1"]}, geometry=[box(X0, Y0, X0 + 600, Y0 + 600)], crs=UTM)
    tower = box(X0 + 150, Y0 + 280, X0 + 450, Y0 + 320)
    others = [box(X0 + 450, Y0 + 290, X0 + 470, Y0 + 310)]  # touches the tower
    others += [box(X0 + 30 + 60 * k, Y0 + 40 + 420 * (k % 2), X0 + 70 + 60 * k, Y0 + 80 + 420 * (k % 2)) for k in range(9)]
    feet = np.array([tower, *others], dtype=object)
    rng = np.random.default_rng(4)
    counts = np.r_[1200, np.full(len(others), 120)]
    xy = _points_inside(feet, counts, rng)
    hh = gpd.GeoDataFrame({"household_id": np.arange(len(xy))}, geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=UTM)
    bld = gpd.GeoDataFrame(geometry=list(feet), crs=UTM)
    res = redraw(comm.to_crs(4326), hh.to_crs(4326), buildings=bld.to_crs(4326), minimal_change=False, seed=0)
    assert (res.grids["households"] <= 500).all()
    assert res.summary["in_band_pct"] == 100.0
    _check_whole_and_recount(res, comm.geometry.to_numpy(), feet, hh.geometry.to_numpy())
    shares = shapely.area(shapely.intersection(res.grids.to_crs(UTM).geometry.to_numpy(), tower))
    assert (shares > 1.0).sum() >= 3  # 1,200 households need at least three grids


def test_tower_without_household_points_sliced_by_its_ground():
    """Buildings given with counts only: a 1,200-household tower is sliced into shares of its count by
    footprint area, and every grid's count equals its share recounted from the footprints."""
    comm = gpd.GeoDataFrame({"code": ["SQ-1"]}, geometry=[box(X0, Y0, X0 + 600, Y0 + 600)], crs=UTM)
    rng = np.random.default_rng(5)
    centres = rng.uniform(20, 580, (40, 2)) + [X0, Y0]
    centres = centres[np.abs(centres[:, 1] - (Y0 + 300)) > 40]
    feet = np.array([box(x - 8, y - 8, x + 8, y + 8) for x, y in centres] + [box(X0 + 150, Y0 + 280, X0 + 450, Y0 + 320)],
                    dtype=object)
    households = np.r_[rng.integers(20, 50, len(centres)), 1200]
    bld = gpd.GeoDataFrame({"households": households}, geometry=list(feet), crs=UTM)
    res = redraw(comm.to_crs(4326), buildings=bld.to_crs(4326), seed=0)
    grids = res.grids.to_crs(UTM).geometry.to_numpy()
    assert res.grids["households"].sum() == households.sum()
    assert res.summary["in_band_pct"] == 100.0
    share = np.array([(households * shapely.area(shapely.intersection(feet, g)) / shapely.area(feet)).sum() for g in grids])
    assert np.abs(share - res.grids["households"].to_numpy()).max() <= 1.0
    assert (shapely.area(shapely.intersection(grids, feet[-1])) > 1.0).sum() == 3
