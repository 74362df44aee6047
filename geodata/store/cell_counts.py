"""Households and members counted per H3 cell and grid, for the aggregate map tiles (derived data, 0017).

An aggregate ``households`` tile at zoom 12 used to find the H3 cells under the tile among ~300k
households and count each cell's households from the rows: 10 s at 1M households (issue 13). The
counts change only when someone writes, so ``h3_counts`` keeps them: one row per layer
(``households``/``members``), resolution (5–10), cell (H3 index as BIGINT) and grid, with the count and
the cell's centre as a point ``(lon, lat, res)`` (EPSG:4326 degrees; the resolution as Z, so one n-D
GiST index finds a resolution's cells in a box). A tile then reads a few dozen rows.

It is rebuilt with ``grid_figures`` (:func:`geodata.store.grid_figures.refresh`), for the layers whose
table a committed write marked (freshness marks, :mod:`geodata.store.epochs`: an insert, a delete, or an
update of ``h3`` or ``grid_code``), so a tile never shows counts older than the last committed write.
A member going 在岗/离岗 marks nothing: every member is counted, on duty or not. Region filtering stays
exact: counts are per grid and summed over the caller's.
"""

from __future__ import annotations

from collections.abc import Iterable

import h3
from sqlalchemy import text
from sqlalchemy.engine import Connection

#: Layers counted, each from the table of that name (``h3`` column, resolution 10).
LAYERS = ("households", "members")
#: Resolutions kept (the tiles draw 5 below zoom 10 up to 10 from zoom 16; geodata.store.tiles.cell_res).
RESOLUTIONS = (5, 6, 7, 8, 9, 10)
_POINT_RES = 10


def parent_sql(col: str, res: str) -> str:
    """SQL of the parent H3 index at resolution ``res`` (an SQL integer expression) of a resolution-10
    BIGINT index: the resolution field (bits 52–55) set to ``res`` and the finer digits (3 bits each) to 7."""
    return (f"(({col} & ~(15::bigint << 52)) | (CAST({res} AS bigint) << 52) "
            f"| ((1::bigint << (3 * (15 - CAST({res} AS int)))) - 1))")


def rebuild(conn: Connection, layers: Iterable[str]) -> None:
    """Recount ``layers`` (of :data:`LAYERS`) into ``h3_counts`` in the caller's transaction.

    One pass over the table (counts per resolution-10 cell and grid); the coarser cells and their counts
    are derived from those rows in Python, and only rows whose count changed are rewritten (an import of
    a few households a few dozen).
    """
    for layer in layers:
        if layer not in LAYERS:
            raise ValueError(f"unknown counted layer {layer!r}")
        rows = conn.execute(text(f"SELECT h3, grid_code, count(*) FROM {layer} WHERE h3 IS NOT NULL "
                                 "GROUP BY h3, grid_code")).all()
        new = _rolled_up(rows)
        old = {(int(r), int(c), g): int(n) for r, c, g, n in conn.execute(
            text("SELECT res, cell, grid_code, n FROM h3_counts WHERE layer = :l"), {"l": layer})}
        _delete(conn, layer, [k for k, n in old.items() if new.get(k) != n])
        _insert(conn, layer, {k: n for k, n in new.items() if old.get(k) != n})


def _rolled_up(rows) -> dict[tuple[int, int, str | None], int]:
    """Count per (resolution, cell as BIGINT, grid) at every resolution of :data:`RESOLUTIONS`, from
    resolution-10 ``(h3, grid_code, n)`` rows; indexes that are no valid H3 cell are left out (they have
    no place to be drawn)."""
    totals: dict[tuple[int, int, str | None], int] = {}
    parents: dict[tuple[str, int], int] = {}
    for cell, grid, n in rows:
        name = h3.int_to_str(int(cell))
        if not h3.is_valid_cell(name) or h3.get_resolution(name) != _POINT_RES:
            continue
        for res in RESOLUTIONS:
            if (name, res) not in parents:
                parents[(name, res)] = h3.str_to_int(h3.cell_to_parent(name, res)) if res < _POINT_RES else int(cell)
            key = (res, parents[(name, res)], grid)
            totals[key] = totals.get(key, 0) + int(n)
    return totals


def _delete(conn: Connection, layer: str, keys: list[tuple[int, int, str | None]]) -> None:
    if keys:
        conn.execute(text(
            "DELETE FROM h3_counts c USING unnest(CAST(:rs AS int[]), CAST(:cells AS bigint[]), CAST(:gs AS text[])) "
            "AS u(r, cell, g) WHERE c.layer = :l AND c.res = u.r AND c.cell = u.cell "
            "AND c.grid_code IS NOT DISTINCT FROM u.g"),
            {"l": layer, "rs": [k[0] for k in keys], "cells": [k[1] for k in keys], "gs": [k[2] for k in keys]})


def _insert(conn: Connection, layer: str, counts: dict[tuple[int, int, str | None], int]) -> None:
    """Write counts with each cell's centre as ``(lon, lat, res)`` (degrees)."""
    if not counts:
        return
    centres = {cell: h3.cell_to_latlng(h3.int_to_str(cell)) for _, cell, _ in counts}
    keys = list(counts)
    conn.execute(text(
        "INSERT INTO h3_counts (layer, res, cell, grid_code, n, centre) SELECT :l, u.r, u.cell, u.g, u.n, "
        "ST_SetSRID(ST_MakePoint(u.x, u.y, u.r), 4326) FROM unnest(CAST(:rs AS int[]), CAST(:cells AS bigint[]), "
        "CAST(:gs AS text[]), CAST(:ns AS int[]), CAST(:xs AS float8[]), CAST(:ys AS float8[])) "
        "AS u(r, cell, g, n, x, y)"),
        {"l": layer, "rs": [k[0] for k in keys], "cells": [k[1] for k in keys], "gs": [k[2] for k in keys],
         "ns": [counts[k] for k in keys], "xs": [centres[k[1]][1] for k in keys],
         "ys": [centres[k[1]][0] for k in keys]})
