"""Reference implementations the tests compare the engines against, written independently of them.

Nearest responders: every distance by :meth:`pyproj.Geod.inv` (Karney's geodesic algorithm) on the
same sphere the engines use (mean radius 6,371,008.8 m, ``gridmap.metric.EARTH_RADIUS_M``), not by
the haversine under test; then filter, sort by (distance, id) and take ``k``. Coordinates WGS84
degrees; distances metres.
"""

from __future__ import annotations

import numpy as np
from pyproj import Geod

#: The sphere of ``gridmap.metric.EARTH_RADIUS_M``, spelled out here so the reference shares no code.
SPHERE = Geod(a=6_371_008.8, b=6_371_008.8)


def sphere_distance_m(lon: float, lat: float, m_lon, m_lat) -> np.ndarray:
    """Great-circle metres from one WGS84 point to many, by geodesic inversion on the sphere."""
    m_lon, m_lat = np.asarray(m_lon, dtype=float), np.asarray(m_lat, dtype=float)
    _, _, dist = SPHERE.inv(np.full_like(m_lon, lon), np.full_like(m_lat, lat), m_lon, m_lat)
    return np.asarray(dist, dtype=float)


def _has_skill(skills, skill: str | None) -> bool:
    if skill is None:
        return True
    if skills is None or (isinstance(skills, float) and np.isnan(skills)):
        return False
    items = skills if isinstance(skills, (list, tuple, set, np.ndarray)) else str(skills).split(",")
    return skill in {str(s).strip() for s in items}


def brute_force_nearest(lon: float, lat: float, ids, m_lon, m_lat, skills=None, available=None, k: int = 5,
                        skill: str | None = None, radius_m: float | None = None) -> list[tuple[str, float]]:
    """The reference ranking: the distance to every responder, filter, sort (distance, id), take ``k``."""
    n = len(ids)
    skills = list(skills) if skills is not None else [None] * n
    avail = np.ones(n, bool) if available is None else np.asarray(available, dtype=bool)
    dist = sphere_distance_m(lon, lat, m_lon, m_lat)
    rows = [i for i in range(n) if avail[i] and _has_skill(skills[i], skill)
            and (radius_m is None or dist[i] <= radius_m)]
    rows.sort(key=lambda i: (dist[i], str(ids[i])))
    return [(str(ids[i]), float(dist[i])) for i in rows[:k]]
