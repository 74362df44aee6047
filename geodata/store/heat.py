"""The incidents of a region and report-date window as H3 cells, for the leaders' heat layer.

Reads ``incidents.h3`` (the resolution-10 cell stored beside each point) and whether each incident is
still open — no ids, names or points leave this module. The filter is the one of
:mod:`geodata.store.stats` (region of any level, ``[t0, t1)`` on ``reported_at``, one category).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Engine

from gridmap import dispatch as rules

_CELLS = text("""
SELECT h3, NOT (status = ANY(:closed)) AS is_open FROM incidents
WHERE (CAST(:region AS text) IS NULL OR grid_code = :region OR community_code = :region OR street_code = :region)
  AND (CAST(:t0 AS timestamptz) IS NULL OR reported_at >= :t0)
  AND (CAST(:t1 AS timestamptz) IS NULL OR reported_at < :t1)
  AND (CAST(:category AS text) IS NULL OR category = :category)
""")


def incident_cells(engine: Engine, region: str | None, *, t0: datetime | None = None, t1: datetime | None = None,
                   category: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(cells, is_open)`` of the incidents reported in ``[t0, t1)`` in ``region`` (None = all):
    the H3 index (int64) of each and whether it is still open (not closed or rated)."""
    with engine.connect() as conn:
        rows = conn.execute(_CELLS, {"region": region, "t0": t0, "t1": t1, "category": category,
                                     "closed": [rules.CLOSED, rules.RATED]}).all()
    cells = np.array([r[0] for r in rows], dtype=np.int64)
    return cells, np.array([bool(r[1]) for r in rows], dtype=bool)
