"""The incidents of a region and report-date window as H3 cells, for the leaders' heat layer.

Reads each incident's point (WGS84 degrees) and whether it is still open — no ids or names; the caller
turns the points into H3 cells before anything leaves the service. (The stored ``h3`` column is not
trusted here: rows written by bulk loads may carry 0.) The filter is the one of
:mod:`geodata.store.stats` (region of any level, ``[t0, t1)`` on ``reported_at``, one category).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Engine

from gridmap import dispatch as rules

_CELLS = text("""
SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat, NOT (status = ANY(:closed)) AS is_open FROM incidents
WHERE (CAST(:region AS text) IS NULL OR grid_code = :region OR community_code = :region OR street_code = :region)
  AND (CAST(:t0 AS timestamptz) IS NULL OR reported_at >= :t0)
  AND (CAST(:t1 AS timestamptz) IS NULL OR reported_at < :t1)
  AND (CAST(:category AS text) IS NULL OR category = :category)
""")


def incident_points(engine: Engine, region: str | None, *, t0: datetime | None = None, t1: datetime | None = None,
                   category: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lon, lat, is_open)`` of the incidents reported in ``[t0, t1)`` in ``region`` (None = all):
    each one's WGS84 point (degrees) and whether it is still open (not closed or rated)."""
    with engine.connect() as conn:
        rows = conn.execute(_CELLS, {"region": region, "t0": t0, "t1": t1, "category": category,
                                     "closed": [rules.CLOSED, rules.RATED]}).all()
    lon = np.array([r[0] for r in rows], dtype=float)
    lat = np.array([r[1] for r in rows], dtype=float)
    return lon, lat, np.array([bool(r[2]) for r in rows], dtype=bool)
