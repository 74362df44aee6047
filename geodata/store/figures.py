"""Headline figures of a region for page headers and home pages (counts only, no personal data)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine

_FIGURES = text("""
WITH g AS (SELECT grid_code, has_branch, geom FROM grids WHERE CAST(:all AS boolean) OR grid_code = ANY(:codes)),
h AS (SELECT household_id FROM households WHERE CAST(:all AS boolean) OR grid_code = ANY(:codes))
SELECT (SELECT count(*) FROM g) AS grids,
       (SELECT count(*) FROM g WHERE has_branch IS NOT TRUE) AS grids_without_branch,
       (SELECT count(*) FROM h) AS households,
       (SELECT count(*) FROM members WHERE CAST(:all AS boolean) OR grid_code = ANY(:codes)) AS members,
       (SELECT count(DISTINCT l.household_id) FROM links l JOIN link_runs r ON r.run_id = l.run_id AND r.is_current
         JOIN h ON h.household_id = l.household_id) AS linked,
       (SELECT ST_XMin(e) || ',' || ST_YMin(e) || ',' || ST_XMax(e) || ',' || ST_YMax(e)
          FROM (SELECT ST_Extent(geom) AS e FROM g) x) AS bounds
""")


def region_figures(engine: Engine, grid_codes: frozenset[str] | None) -> dict:
    """Counts for the grids ``grid_codes`` (None = every grid).

    Returns
    -------
    dict
        ``grids``, ``grids_without_branch`` (空白网格 candidates), ``households``, ``members``,
        ``linked`` (households with a current 包片联户 link), ``linked_share`` (0–1, None without
        households) and ``bounds`` (``[min_lon, min_lat, max_lon, max_lat]``, WGS84 degrees, or
        None without grids).
    """
    with engine.connect() as conn:
        row = conn.execute(_FIGURES, {"all": grid_codes is None, "codes": sorted(grid_codes or ())}).one()
    out = dict(row._mapping)
    out["linked_share"] = out["linked"] / out["households"] if out["households"] else None
    out["bounds"] = [float(v) for v in out["bounds"].split(",")] if out["bounds"] else None
    return out


def grid_bounds(engine: Engine, grid_codes: frozenset[str] | None) -> list[float] | None:
    """WGS84 bounds ``[min_lon, min_lat, max_lon, max_lat]`` (degrees) of the grids ``grid_codes`` (None =
    every grid), or None without grids: the extent alone, without the counts of :func:`region_figures`."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) "
                                "AS e FROM grids WHERE CAST(:all AS boolean) OR grid_code = ANY(:codes)) x"),
                           {"all": grid_codes is None, "codes": sorted(grid_codes or ())}).one()
    return None if row[0] is None else [float(v) for v in row]
