"""GCJ-02 / BD-09 shifts: forward formulas at published reference points, inverses to ≤ 1 cm."""

import numpy as np
import pytest

from geodata import crs
from gridmap.metric import haversine_m

# Reference values published with the widely used `coordtransform` library (wandergis) for the
# point (116.404, 39.915) near Tiananmen: forward formulas are deterministic, so they must match.
REF_WGS_TO_GCJ = ((116.404, 39.915), (116.41024449916938, 39.91640428150164))
REF_GCJ_TO_BD = ((116.404, 39.915), (116.41036949371029, 39.92133699351022))
# coordtransform's BD→GCJ is a closed-form approximation (a few cm off); ours iterates to exact.
REF_BD_TO_GCJ_APPROX = ((116.404, 39.915), (116.39762729119315, 39.90865673957631))


def test_wgs84_to_gcj02_reference():
    (lon, lat), (elon, elat) = REF_WGS_TO_GCJ
    x, y = crs.wgs84_to_gcj02(lon, lat)
    assert abs(x - elon) < 1e-9 and abs(y - elat) < 1e-9


def test_gcj02_to_bd09_reference():
    (lon, lat), (elon, elat) = REF_GCJ_TO_BD
    x, y = crs.gcj02_to_bd09(lon, lat)
    assert abs(x - elon) < 1e-9 and abs(y - elat) < 1e-9


def test_bd09_to_gcj02_close_to_reference_and_exact():
    (lon, lat), (elon, elat) = REF_BD_TO_GCJ_APPROX
    x, y = crs.bd09_to_gcj02(lon, lat)
    assert haversine_m(x, y, elon, elat) < 0.10  # the reference is itself approximate
    bx, by = crs.gcj02_to_bd09(x, y)
    assert haversine_m(bx, by, lon, lat) < 0.01


def test_shift_magnitude_in_hangzhou_is_hundreds_of_metres():
    x, y = crs.wgs84_to_gcj02(120.17, 30.28)
    d = haversine_m(120.17, 30.28, x, y)
    assert 300 < d < 700


@pytest.mark.parametrize("forward,inverse", [
    (crs.wgs84_to_gcj02, crs.gcj02_to_wgs84),
    (crs.wgs84_to_bd09, crs.bd09_to_wgs84),
    (crs.gcj02_to_bd09, crs.bd09_to_gcj02),
])
def test_round_trip_below_one_centimetre(forward, inverse):
    rng = np.random.default_rng(3)
    lon = rng.uniform(75, 134, 5000)
    lat = rng.uniform(18, 53, 5000)
    x, y = inverse(*forward(lon, lat))
    assert haversine_m(lon, lat, x, y).max() < 0.01
    # and the other way round: shift of an un-shifted point
    x2, y2 = forward(*inverse(lon, lat))
    assert haversine_m(lon, lat, x2, y2).max() < 0.01


def test_outside_china_is_not_shifted():
    x, y = crs.wgs84_to_gcj02(2.35, 48.85)
    assert x == 2.35 and y == 48.85


def test_unknown_coordinate_system_refused():
    with pytest.raises(ValueError, match="unknown coordinate system"):
        crs.check_coords("utm")
    assert crs.check_coords("GCJ-02") == "gcj02"
