"""Per-grid figures (households, members, linked households) and GCJ-02 grid outlines, kept current lazily.

Counting a grid's households, members and 包片联户 links on every ``grids`` tile cost 90–150 ms per
tile; the counts change only when someone writes. Statement-level triggers on ``grids``, ``communities``,
``households``, ``members``, ``links`` and ``link_runs`` mark the cache :data:`geodata.store.epochs.GRID_FIGURES`
(a row in ``grid_figures_dirty``) inside the writer's own transaction, when the statement changed a column
the figures count or show (migration 0019: a member going 在岗/离岗 marks nothing). :func:`ensure_fresh`
(called before a grids tile is drawn) sees such a mark only once that write has committed, and then
rebuilds ``grid_figures`` (:func:`geodata.store.epochs.refresh`): a tile never shows figures older than the
last committed write, and the writers themselves need no change.

The rebuild also stores each grid's outline shifted to GCJ-02 (the datum of Amap base maps) vertex by
vertex with :func:`geodata.crs.wgs84_to_gcj02`, so shifted grid tiles are exact and as fast as plain
ones. Outlines are recomputed only when ``grids`` was written (or a grid has none yet). The same goes
for what a grids tile shows besides the figures (name, community and its name, kind, branch, the outline
in Web Mercator; migration 0017), also after a write to ``communities``: a tile reads one table. A write
to ``households`` or ``members`` also recounts that layer's H3 cells (:mod:`geodata.store.cell_counts`).
"""

from __future__ import annotations

import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from geodata.crs import wgs84_to_gcj02
from geodata.store import cell_counts, epochs

_COUNTS_SQL = """
INSERT INTO grid_figures (grid_code, households, members, linked_households)
SELECT g.grid_code, COALESCE(h.n, 0), COALESCE(m.n, 0), COALESCE(l.n, 0)
FROM grids g
LEFT JOIN (SELECT grid_code, count(*) AS n FROM households GROUP BY grid_code) h USING (grid_code)
LEFT JOIN (SELECT grid_code, count(*) AS n FROM members GROUP BY grid_code) m USING (grid_code)
LEFT JOIN (SELECT h.grid_code, count(*) AS n FROM households h
           JOIN links l ON l.household_id = h.household_id
           JOIN link_runs r ON r.run_id = l.run_id AND r.is_current GROUP BY h.grid_code) l USING (grid_code)
ON CONFLICT (grid_code) DO UPDATE SET households = EXCLUDED.households, members = EXCLUDED.members,
                                      linked_households = EXCLUDED.linked_households
WHERE (grid_figures.households, grid_figures.members, grid_figures.linked_households)
      IS DISTINCT FROM (EXCLUDED.households, EXCLUDED.members, EXCLUDED.linked_households)"""


def is_stale(conn: Connection) -> bool:
    """Whether a committed write has changed the data under ``grid_figures`` since its last rebuild."""
    return epochs.is_stale(conn, epochs.GRID_FIGURES)


def ensure_fresh(engine: Engine) -> bool:
    """Rebuild ``grid_figures`` if a committed write made it stale; returns whether it rebuilt."""
    with engine.connect() as conn:
        if not is_stale(conn):
            return False
    return refresh(engine)


def refresh(engine: Engine) -> bool:
    """Rebuild the figures (and, after a write to ``grids``, the GCJ-02 outlines) in one transaction.

    The dirty marks are deleted *before* counting (:func:`geodata.store.epochs.refresh`): under READ
    COMMITTED each statement sees every write committed before it started, so a write committing
    mid-rebuild either is counted or leaves its mark for the next rebuild — never neither. Returns False
    when another request had already rebuilt.
    """
    return epochs.refresh(engine, epochs.GRID_FIGURES, _rebuild)


def _rebuild(conn: Connection, marks: set[str]) -> None:
    """Recount every grid's figures and copy what changed under the tables named in ``marks``."""
    conn.execute(text("DELETE FROM grid_figures f WHERE NOT EXISTS "
                      "(SELECT 1 FROM grids g WHERE g.grid_code = f.grid_code)"))
    conn.execute(text(_COUNTS_SQL))
    _shift_outlines(conn, every=("grids" in marks))
    _copy_grids(conn, every=bool(marks & {"grids", "communities"}))
    cell_counts.rebuild(conn, sorted(marks & set(cell_counts.LAYERS)))


def _copy_grids(conn: Connection, every: bool) -> None:
    """Copy what a ``grids`` tile shows (name, community and its name, kind, branch, the outline in Web
    Mercator, EPSG:3857 metres) into ``grid_figures`` (0017), so a tile reads one table."""
    where = "" if every else " AND f.geom_3857 IS NULL"
    conn.execute(text(
        "UPDATE grid_figures f SET name = g.name, community_code = g.community_code, community_name = c.name, "
        "kind = g.kind, has_branch = g.has_branch, geom_3857 = ST_Transform(ST_Multi(g.geom), 3857) "
        "FROM grids g LEFT JOIN communities c ON c.code = g.community_code "
        f"WHERE f.grid_code = g.grid_code{where} AND (f.name, f.community_code, f.community_name, f.kind, "
        "f.has_branch, f.geom_3857) IS DISTINCT FROM (g.name, g.community_code, c.name, g.kind, g.has_branch, "
        "ST_Transform(ST_Multi(g.geom), 3857))"))


def _shift_outlines(conn: Connection, every: bool) -> None:
    """Store each grid's outline shifted WGS84 → GCJ-02 vertex by vertex (degrees, EPSG:4326 column)."""
    where = "" if every else " WHERE f.geom_gcj02 IS NULL"
    rows = conn.execute(text("SELECT g.grid_code, ST_AsBinary(ST_Multi(g.geom)) FROM grid_figures f "
                             f"JOIN grids g USING (grid_code){where}")).all()
    if not rows:
        return
    outlines = shapely.from_wkb([bytes(r[1]) for r in rows])
    shifted = shapely.transform(outlines, lambda xy: np.column_stack(wgs84_to_gcj02(xy[:, 0], xy[:, 1])))
    conn.execute(text("UPDATE grid_figures f SET geom_gcj02 = ST_SetSRID(ST_GeomFromWKB(u.wkb), 4326) "
                      "FROM unnest(CAST(:codes AS text[]), CAST(:wkbs AS bytea[])) AS u(code, wkb) "
                      "WHERE f.grid_code = u.code"),
                 {"codes": [r[0] for r in rows], "wkbs": [bytes(b) for b in shapely.to_wkb(shifted)]})
