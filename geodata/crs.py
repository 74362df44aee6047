"""Coordinate systems of Chinese map data: WGS84, GCJ-02 (Amap/Tencent), BD-09 (Baidu), CGCS2000.

Everything is stored in WGS84 (EPSG:4326). GCJ-02 is the obfuscated datum mandated for published
maps in China: a published, deterministic shift of 100–700 m applied to WGS84 inside China. BD-09
is Baidu's further rotation of GCJ-02. PROJ knows neither, so the forward formulas are written
here once; the inverses have no closed form and are solved by fixed-point iteration until the
round trip is below 1e-9 degrees (~0.1 mm), far inside the 1 cm requirement.

CGCS2000 (EPSG:4490) differs from WGS84 by a few centimetres; it is treated as WGS84, which is the
official practice for maps at city scale.
"""

from __future__ import annotations

import numpy as np

COORD_SYSTEMS = ("wgs84", "gcj02", "bd09", "cgcs2000")

# Krasovsky 1940 ellipsoid, as used by the GCJ-02 formulas.
_A = 6378245.0
_EE = 0.00669342162296594323
_X_PI = np.pi * 3000.0 / 180.0

#: Rough bounding box of mainland China, Hainan and Taiwan (WGS84 degrees).
CHINA_BBOX = (73.4, 3.8, 135.1, 53.6)

_TOL_DEG = 1e-10
_MAX_ITER = 30


def in_china(lon, lat) -> np.ndarray:
    """True where a WGS84 point (degrees) lies inside China's bounding box."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    minx, miny, maxx, maxy = CHINA_BBOX
    return (lon >= minx) & (lon <= maxx) & (lat >= miny) & (lat <= maxy)


def _transform_lat(x, y):
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    ret += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    ret += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    ret += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    return ret


def _transform_lon(x, y):
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    ret += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    ret += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    ret += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    return ret


def wgs84_to_gcj02(lon, lat):
    """WGS84 → GCJ-02 (degrees). Points outside China are returned unchanged, as the official shift does."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    dlat = _transform_lat(lon - 105.0, lat - 35.0)
    dlon = _transform_lon(lon - 105.0, lat - 35.0)
    radlat = lat / 180.0 * np.pi
    magic = 1 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    inside = in_china(lon, lat)
    return np.where(inside, lon + dlon, lon), np.where(inside, lat + dlat, lat)


def gcj02_to_bd09(lon, lat):
    """GCJ-02 → BD-09 (degrees)."""
    x = np.asarray(lon, dtype=float)
    y = np.asarray(lat, dtype=float)
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _invert(forward, lon, lat):
    """Solve ``forward(x) = target`` by fixed-point iteration (the shift is smooth and < 1 km)."""
    tlon = np.asarray(lon, dtype=float)
    tlat = np.asarray(lat, dtype=float)
    x, y = tlon.copy(), tlat.copy()
    for _ in range(_MAX_ITER):
        fx, fy = forward(x, y)
        ex, ey = fx - tlon, fy - tlat
        x = x - ex
        y = y - ey
        if np.all(np.abs(ex) < _TOL_DEG) and np.all(np.abs(ey) < _TOL_DEG):
            break
    return x, y


def gcj02_to_wgs84(lon, lat):
    """GCJ-02 → WGS84 (degrees), iterated to < 1e-10° (sub-millimetre) round-trip error."""
    return _invert(wgs84_to_gcj02, lon, lat)


def bd09_to_gcj02(lon, lat):
    """BD-09 → GCJ-02 (degrees), iterated to < 1e-10°."""
    return _invert(gcj02_to_bd09, lon, lat)


def wgs84_to_bd09(lon, lat):
    """WGS84 → BD-09 (degrees)."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon, lat):
    """BD-09 → WGS84 (degrees), iterated to < 1e-10°."""
    return _invert(wgs84_to_bd09, lon, lat)


_TO_WGS84 = {
    "wgs84": lambda x, y: (np.asarray(x, float), np.asarray(y, float)),
    "cgcs2000": lambda x, y: (np.asarray(x, float), np.asarray(y, float)),
    "gcj02": gcj02_to_wgs84,
    "bd09": bd09_to_wgs84,
}
_FROM_WGS84 = {
    "wgs84": lambda x, y: (np.asarray(x, float), np.asarray(y, float)),
    "cgcs2000": lambda x, y: (np.asarray(x, float), np.asarray(y, float)),
    "gcj02": wgs84_to_gcj02,
    "bd09": wgs84_to_bd09,
}


def check_coords(coords: str) -> str:
    """Normalise a coordinate-system name (``wgs84|gcj02|bd09|cgcs2000``); raise ValueError otherwise."""
    c = (coords or "wgs84").strip().lower().replace("-", "").replace("_", "")
    if c not in COORD_SYSTEMS:
        raise ValueError(f"unknown coordinate system {coords!r}: use one of {', '.join(COORD_SYSTEMS)}")
    return c


def to_wgs84(lon, lat, coords: str):
    """Convert arrays of lon/lat (degrees) in ``coords`` to WGS84."""
    return _TO_WGS84[check_coords(coords)](lon, lat)


def from_wgs84(lon, lat, coords: str):
    """Convert arrays of WGS84 lon/lat (degrees) to ``coords``."""
    return _FROM_WGS84[check_coords(coords)](lon, lat)


def geodataframe_to_wgs84(gdf, coords: str):
    """Copy of a lon/lat GeoDataFrame whose coordinates are in ``coords``, shifted to WGS84 (EPSG:4326)."""
    c = check_coords(coords)
    out = gdf.copy()
    if c in ("wgs84", "cgcs2000"):
        return out.set_crs("EPSG:4326", allow_override=True)
    import shapely

    out.geometry.values[:] = shapely.transform(out.geometry.values, lambda xy: np.column_stack(_TO_WGS84[c](xy[:, 0], xy[:, 1])))
    return out.set_crs("EPSG:4326", allow_override=True)


def geodataframe_from_wgs84(gdf, coords: str):
    """Copy of a WGS84 GeoDataFrame shifted into ``coords`` (e.g. GCJ-02 for Amap tiles)."""
    c = check_coords(coords)
    out = gdf.copy()
    if c in ("wgs84", "cgcs2000"):
        return out
    import shapely

    out.geometry.values[:] = shapely.transform(out.geometry.values,
                                               lambda xy: np.column_stack(_FROM_WGS84[c](xy[:, 0], xy[:, 1])))
    return out
