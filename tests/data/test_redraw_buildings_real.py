"""Redrawn grids hold their OSM buildings whole on the Shanghai Bund (../shared) and on the bundled
sample: counts equal a point-in-polygon recount.
"""

from __future__ import annotations

import time

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
from conftest import SAMPLE, SHANGHAI

from gridmap.districting import redraw

from redraw_cases import _check_whole_and_recount, _points_inside


UTM = "EPSG:32651"
X0, Y0 = 230_000.0, 3_350_000.0


def test_osm_buildings_whole_and_counts_equal_recount():
    communities = pyogrio.read_dataframe(SAMPLE / "communities.geojson")
    comm_m = communities.to_crs(UTM).geometry.to_numpy()
    bld = pyogrio.read_dataframe(SHANGHAI / "buildings.geojson").to_crs(UTM)
    bld = bld[bld.geom_type.isin(["Polygon", "MultiPolygon"]) & bld.intersects(shapely.union_all(comm_m))]
    bld = bld[bld.area > 20].reset_index(drop=True)
    rng = np.random.default_rng(3)
    counts = np.maximum(1, (bld.area.to_numpy() / 400).astype(int))  # large footprints hold many households
    xy = _points_inside(bld.geometry.to_numpy(), counts, rng)
    hh = gpd.GeoDataFrame({"household_id": np.arange(len(xy))}, geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=UTM)
    t = time.perf_counter()
    res = redraw(communities, hh.to_crs(4326), buildings=bld.to_crs(4326), minimal_change=False, seed=0)
    print(f"\nredraw with {len(bld)} OSM footprints, {len(xy)} households: {time.perf_counter() - t:.2f} s")
    _check_whole_and_recount(res, comm_m, bld.geometry.to_numpy(), hh.geometry.to_numpy())


@pytest.mark.parametrize("with_grids", [True, False])
def test_sample_redraw_places_every_household(with_grids):
    layers = {n: pyogrio.read_dataframe(SAMPLE / f"{n}.geojson") for n in ("communities", "households", "grids", "buildings")}
    t = time.perf_counter()
    res = redraw(layers["communities"], layers["households"], current=layers["grids"] if with_grids else None,
                 buildings=layers["buildings"], seed=0)
    print(f"\nsample redraw with {len(layers['buildings'])} footprints: {time.perf_counter() - t:.2f} s")
    assert res.households.notna().all()
    assert not [i for i in res.issues if i["kind"] == "unassigned"]
    comm_m = layers["communities"].to_crs(UTM).geometry.to_numpy()
    _check_whole_and_recount(res, comm_m, layers["buildings"].to_crs(UTM).geometry.to_numpy(),
                             layers["households"].to_crs(UTM).geometry.to_numpy())
