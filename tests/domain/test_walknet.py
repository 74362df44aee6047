"""Walking network on small hand-made networks with known answers.

Domain tier: built data only (no database, no browser, no ../shared).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import LineString

from gridmap.walknet import build_walk_network


UTM = "EPSG:32651"


def _lines(coords_list, crs=UTM, **cols):
    g = gpd.GeoDataFrame(cols, geometry=[LineString(c) for c in coords_list], crs=crs)
    return g.to_crs(4326)


def test_crossing_lines_are_noded_and_motorway_ignored():
    # a plus sign of two 200 m footways plus a motorway shortcut between two arm ends
    roads = _lines([[(0, 100), (200, 100)], [(100, 0), (100, 200)], [(0, 100), (100, 0)], [(200, 100), (200.03, 300)]],
                   kind=["path", "path", "major_road", "path"], kind_detail=["footway", "footway", "motorway", "footway"])
    roads = roads.to_crs(4326)
    net = build_walk_network(roads, crs=UTM, min_component_m=0)
    assert net.n_nodes == 6  # 4 arm ends + crossing + far end (the 3 cm tile gap is joined)
    # from the west arm end to the south arm end: 100 + 100 through the crossing, not the motorway
    d = net.point_distances(np.array([[0.0, 100.0]]), np.array([[100.0, 0.0]]), limit=1000)
    assert d[0, 0] == pytest.approx(200.0, abs=1e-6)
    # a point off the road walks straight to it: 10 m access + 50 m along + 0
    d = net.point_distances(np.array([[50.0, 110.0]]), np.array([[100.0, 100.0]]), limit=1000)
    assert d[0, 0] == pytest.approx(60.0, abs=1e-6)
    # two points on the same edge walk directly along it
    d = net.point_distances(np.array([[20.0, 100.0]]), np.array([[40.0, 103.0]]), limit=1000)
    assert d[0, 0] == pytest.approx(23.0, abs=1e-6)
    # across the joined tile gap
    d = net.point_distances(np.array([[150.0, 100.0]]), np.array([[200.0, 250.0]]), limit=1000)
    assert d[0, 0] == pytest.approx(200.0, abs=0.05)
    # beyond the limit: inf
    assert np.isinf(net.point_distances(np.array([[0.0, 100.0]]), np.array([[200.0, 290.0]]), limit=300))[0, 0]
