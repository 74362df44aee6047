"""Per-grid counts for the planners' staffing table: households, members and linked households."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine

_GRIDS = text("""
SELECT g.grid_code, g.name, g.community_code, c.name AS community_name, g.kind, g.has_branch, g.branch_name,
       COALESCE(h.n, 0) AS households, COALESCE(m.n, 0) AS members, COALESCE(l.n, 0) AS linked
FROM grids g
LEFT JOIN communities c ON c.code = g.community_code
LEFT JOIN (SELECT grid_code, count(*) AS n FROM households GROUP BY grid_code) h ON h.grid_code = g.grid_code
LEFT JOIN (SELECT grid_code, count(*) AS n FROM members GROUP BY grid_code) m ON m.grid_code = g.grid_code
LEFT JOIN (SELECT h.grid_code, count(DISTINCT l.household_id) AS n FROM links l
           JOIN link_runs r ON r.run_id = l.run_id AND r.is_current
           JOIN households h ON h.household_id = l.household_id GROUP BY h.grid_code) l ON l.grid_code = g.grid_code
WHERE CAST(:all AS boolean) OR g.grid_code = ANY(:codes)
ORDER BY g.community_code, g.grid_code
""")


def grid_counts(engine: Engine, grid_codes: frozenset[str] | None) -> list[dict]:
    """One row per grid of ``grid_codes`` (None: every grid) with its community and counts (no personal data)."""
    with engine.connect() as conn:
        rows = conn.execute(_GRIDS, {"all": grid_codes is None, "codes": sorted(grid_codes or ())}).mappings().all()
    return [dict(r) for r in rows]
