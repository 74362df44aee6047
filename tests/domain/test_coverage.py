"""Coverage gaps on built points: unlinked reasons, link estimates, the straight-line boundary.

Domain tier: built data only (no database, no browser, no ../shared).
"""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest

from gridmap.coverage import (
    UNLINKED_FULL,
    UNLINKED_NO_GRID,
    UNLINKED_TOO_FAR,
    straight_line_coverage,
    unlinked_households,
)
from gridmap.metric import EARTH_RADIUS_M


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
