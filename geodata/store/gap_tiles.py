"""The coverage-gap layer's vector tiles (``/tiles/gaps/…``): per H3 cell, households, unlinked households
(no link in a current 包片联户 run) and households outside every service centre's circle.

Counting every household under a zoom-12 tile live (a links probe and a centres probe per household) took
seconds at 1M households. Most of it is known already:

- **households per cell** come from ``h3_counts`` (:mod:`geodata.store.cell_counts`, per resolution-10
  cell and grid), exact: the same households, counted by the same index;
- **unlinked** are known per grid from ``grid_figures``: a grid whose households are all linked has none,
  a grid with no linked household has all of its households unlinked (a household has at most one current
  link: saving a run takes the links of its households away from other regions' runs,
  :func:`geodata.store.links.save_run`); only households of partly linked grids are looked at one by one;
- **outside** is decided per resolution-10 cell from the cell centre's margin to the circles,
  ``m = min over centres (distance − radius)`` in metres, and the cell's reach ``R`` (the largest distance
  from its centre to a corner, computed with :mod:`h3`; a household lies inside its own cell): ``m > R``
  → every household of the cell is outside, ``m ≤ −R`` → none is; only households of cells a circle's
  edge may cross are tested one by one, as before (``ST_DWithin`` on geography, metres). Margins are
  great-circle distances from a KD-tree of the centres near the tile (a spheroid distance differs from
  the sphere's by under 0.6 %: the tests allow 1 %), not one geography query per cell.

Both tables are rebuilt after a committed write before a tile is drawn (the tile checks their freshness
as grids and household tiles do), so a gaps tile equals the live count. Service centres are read live (a
small table). Should the resolution-10 cells found under a tile not add up to their parents' counts, the
tile is counted live (``geodata.store.tiles._gap_cells_sql``) instead: never a wrong count.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import h3
import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Connection

from geodata.store.cell_counts import parent_sql

#: Resolution of the stored household cells (``households.h3``, ``h3_counts`` rows used here).
POINT_RES = 10
#: Centres searched around a cell centre: the largest circle plus this many metres (a resolution-10 cell
#: reaches less than 100 m from its centre; a cell reaching further is tested household by household).
SEARCH_PAD_M = 500.0
#: The reach is measured on H3's sphere and the households are tested on the WGS84 spheroid: 1 % and 1 m
#: cover the difference at these distances.
REACH_SLACK = (1.01, 1.0)
#: Bounds of (spheroid distance / great-circle distance on the mean sphere) used for the margins: the
#: true ratio lies within 0.9943–1.0045 (the radii of curvature 6,335–6,400 km against 6,371 km).
SPHERE_SLACK = (0.99, 1.01)
#: Mean earth radius (metres) of the great-circle distances (PostGIS's and h3's sphere).
EARTH_RADIUS_M = 6_371_008.8
#: No parallel workers for a tile's statements (see ``geodata.store.tiles._SERIAL``): set_config is PARALLEL
#: UNSAFE, and in autocommit the setting ends with the statement.
SERIAL = "set_config('max_parallel_workers_per_gather', '0', true)"


def _region(codes, col: str) -> str:
    return "" if codes is None else f" AND {col} = ANY(:codes)"


def _street(codes, alias: str) -> str:
    """Partition pruning of a region-scoped caller (see :func:`geodata.store.tiles._street_sql`)."""
    return "" if codes is None else f" AND ({alias}.street_code = ANY(:streets_of) OR {alias}.street_code IS NULL)"


def _box(prefix: str) -> str:
    return (f"ST_SetSRID(ST_3DMakeBox(ST_MakePoint(:{prefix}x0, :{prefix}y0, :{prefix}res), "
            f"ST_MakePoint(:{prefix}x1, :{prefix}y1, :{prefix}res))::geometry, 4326)")


def children_sql(codes) -> str:
    """Per resolution-10 cell and grid under the parents drawn (cells at ``:pres`` whose centre lies in the
    ``:p…`` box): the parent, the cell, the grid, the count, the parent's count over the caller's grids, the
    grid's link state (``all``/``none``/``some``) and the cell centre (WGS84 degrees). A parent none of whose
    cells was found comes once with a NULL cell."""
    parent = parent_sql("c.cell", ":pres")
    return f"""
    WITH p AS (SELECT cell, sum(n) AS n FROM h3_counts
               WHERE centre &&& {_box('p')} AND layer = 'households' AND res = :pres{_region(codes, 'grid_code')}
               GROUP BY cell),
         c AS (SELECT {parent} AS parent, c.cell, c.grid_code, c.n, c.centre FROM h3_counts c
               WHERE c.centre &&& {_box('c')} AND c.layer = 'households' AND c.res = {POINT_RES}
                 {_region(codes, 'c.grid_code')})
    SELECT p.cell AS parent, c.cell, c.grid_code, c.n, p.n AS parent_n,
           CASE WHEN f.linked_households >= f.households THEN 'all' WHEN f.linked_households = 0 THEN 'none'
                ELSE 'some' END AS linked, ST_X(c.centre) AS lon, ST_Y(c.centre) AS lat
    FROM p LEFT JOIN c ON c.parent = p.cell LEFT JOIN grid_figures f ON f.grid_code = c.grid_code"""


#: Service centres that may matter to the cells in the box ``:cx0 … :cy1`` (the box widened by ``:pad_lon`` /
#: ``:pad_lat`` degrees: the largest radius plus :data:`SEARCH_PAD_M`), with their radius in metres.
CENTRES_SQL = """
SELECT ST_X(geom), ST_Y(geom), COALESCE(radius_m, :radius_m) FROM service_centres
WHERE geom && ST_MakeEnvelope(:cx0 - :pad_lon, :cy0 - :pad_lat, :cx1 + :pad_lon, :cy1 + :pad_lat, 4326)"""


def households_sql(codes) -> str:
    """Unlinked and outside households, counted one by one, of the ``(:cells, :grids)`` pairs (resolution-10
    cell and grid; NULL grid = households in no grid): unlinked in the cells ``:cells_u``, outside in the
    cells ``:cells_o``. The live test of ``geodata.store.tiles._gap_cells_sql`` written as anti-joins on
    the households of those cells (one pass over the current links, one index probe of the centres per
    household), grouped by cell and grid, then matched to the pairs."""
    def counted(cells: str, absent: str) -> str:
        return (f"SELECT p.h3 AS cell, p.grid_code AS grid, count(*) AS n FROM households p "
                f"WHERE p.h3 = ANY(CAST(:{cells} AS bigint[])){_street(codes, 'p')} AND NOT EXISTS ({absent}) "
                "GROUP BY p.h3, p.grid_code")

    linked = ("SELECT 1 FROM links l JOIN link_runs r ON r.run_id = l.run_id AND r.is_current "
              f"WHERE l.household_id = p.household_id{_street(codes, 'l')}")
    return f"""
    WITH q AS (SELECT * FROM unnest(CAST(:cells AS bigint[]), CAST(:grids AS text[])) AS q(cell, grid)),
         u AS ({counted('cells_u', linked)}),
         o AS ({counted('cells_o', _within_sql('p.geom'))})
    SELECT q.cell, q.grid, COALESCE(u.n, 0) AS unlinked, COALESCE(o.n, 0) AS outside FROM q
    LEFT JOIN u ON u.cell = q.cell AND u.grid IS NOT DISTINCT FROM q.grid
    LEFT JOIN o ON o.cell = q.cell AND o.grid IS NOT DISTINCT FROM q.grid"""


def _within_sql(point: str) -> str:
    """A centre whose circle holds ``point`` (the box only lets the GiST index pick candidates)."""
    return f"""SELECT 1 FROM service_centres s
               WHERE s.geom && ST_Expand({point}, :max_m / (111320.0 * cos(radians(ST_Y({point})))), :max_m / 110540.0)
                 AND ST_DWithin(s.geom::geography, {point}::geography, COALESCE(s.radius_m, :radius_m))"""


@functools.lru_cache(maxsize=1 << 17)
def cell_reach_m(cell: int) -> float:
    """Largest distance in metres from the centre of H3 ``cell`` (BIGINT) to its corners, widened by
    :data:`REACH_SLACK`: no point of the cell is further from its centre (the cell is convex)."""
    name = h3.int_to_str(int(cell))
    centre = h3.cell_to_latlng(name)
    far = max(h3.great_circle_distance(centre, corner, "m") for corner in h3.cell_to_boundary(name))
    return far * REACH_SLACK[0] + REACH_SLACK[1]


def _unit(lon, lat) -> np.ndarray:
    """Points (degrees) as unit vectors, for chord distances in a KD-tree."""
    lo, la = np.radians(np.asarray(lon, float)), np.radians(np.asarray(lat, float))
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def margins(cells_xy: np.ndarray, centres: Sequence[Sequence], search_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Per cell centre (``(n, 2)`` lon/lat degrees): ``min over centres (distance − radius)`` in metres as a
    low and a high bound of the spheroid figure (:data:`SPHERE_SLACK`), over the centres within ``search_m``
    metres; ``+inf`` where none is that near."""
    lo = np.full(len(cells_xy), np.inf)
    hi = np.full(len(cells_xy), np.inf)
    if not len(centres) or not len(cells_xy):
        return lo, hi
    from scipy.spatial import cKDTree

    xy = np.asarray(centres, float)
    chord = 2.0 * math.sin(min(search_m / EARTH_RADIUS_M, math.pi) / 2.0)
    pairs = cKDTree(_unit(cells_xy[:, 0], cells_xy[:, 1])).sparse_distance_matrix(
        cKDTree(_unit(xy[:, 0], xy[:, 1])), chord, output_type="coo_matrix")
    arc = 2.0 * EARTH_RADIUS_M * np.arcsin(np.minimum(pairs.data / 2.0, 1.0))
    radius = xy[pairs.col, 2]
    np.minimum.at(lo, pairs.row, SPHERE_SLACK[0] * arc - radius)
    np.minimum.at(hi, pairs.row, SPHERE_SLACK[1] * arc - radius)
    return lo, hi


def classify(rows: Sequence[Sequence], margin_lo: np.ndarray, margin_hi: np.ndarray
             ) -> tuple[dict, list[tuple[int, str | None]]]:
    """Counts known without looking at households, per ``(cell, grid)`` of :func:`children_sql` rows and
    their cells' margins (:func:`margins`): ``{(cell, grid): [parent, n, unlinked or None, outside or None]}``,
    and the pairs to count one by one."""
    known, pending = {}, []
    for i, (parent, cell, grid, n, _, linked, *_) in enumerate(rows):
        n = int(n)
        unlinked = {"all": 0, "none": n}.get(linked)
        reach = cell_reach_m(cell)
        outside = None
        if reach < SEARCH_PAD_M and margin_lo[i] > reach:  # +inf: no centre within the search
            outside = n
        elif margin_hi[i] <= -reach:
            outside = 0
        known[(int(cell), grid)] = [int(parent), n, unlinked, outside]
        if unlinked is None or outside is None:
            pending.append((int(cell), grid))
    return known, pending


def complete(rows: Sequence[Sequence]) -> bool:
    """Whether the resolution-10 cells found add up to their parents' household counts."""
    found: dict[int, int] = {}
    for parent, cell, _, n, *_ in rows:
        if cell is None:
            return False
        found[int(parent)] = found.get(int(parent), 0) + int(n)
    totals = {int(r[0]): int(r[4]) for r in rows}
    return found == totals


def gap_rows(conn: Connection, codes, params: dict, pii: bool, k: int) -> list[tuple[int, int, int, int]] | None:
    """``(parent cell, households, unlinked, outside)`` per parent cell at ``params["res"]`` under the tile,
    from the cached counts plus the households that must be tested; parents with fewer than ``k`` unlinked
    and fewer than ``k`` outside are left out unless ``pii``. None when the cached cells are incomplete
    (the caller then counts live)."""
    rows = [r[:-1] for r in conn.execute(text(f"SELECT q.*, {SERIAL} FROM ({children_sql(codes)}) q"), params)]
    if not complete(rows):
        return None
    max_m = _max_radius(conn, params)
    search_m = (max_m + SEARCH_PAD_M) / SPHERE_SLACK[0]
    pad_lat = 1.1 * search_m / 110_540.0
    lat = max(abs(params["cy0"]), abs(params["cy1"])) + pad_lat
    pad_lon = 1.1 * search_m / (111_320.0 * max(math.cos(math.radians(min(lat, 89.9))), 1e-6))
    centres = conn.execute(text(CENTRES_SQL), {**params, "pad_lon": pad_lon, "pad_lat": pad_lat}).all()
    lo, hi = margins(np.array([r[6:8] for r in rows], float).reshape(-1, 2), centres, search_m)
    known, pending = classify(rows, lo, hi)
    if pending:
        counted = conn.execute(text(f"SELECT q.*, {SERIAL} FROM ({households_sql(codes)}) q"), {
            **params, "cells": [c for c, _ in pending], "grids": [g for _, g in pending],
            "cells_u": sorted({p[0] for p in pending if known[p][2] is None}),
            "cells_o": sorted({p[0] for p in pending if known[p][3] is None}),
            "max_m": max_m * 1.01 + 1}).all()
        for cell, grid, unlinked, outside, _ in counted:
            entry = known[(int(cell), grid)]
            entry[2] = int(unlinked) if entry[2] is None else entry[2]
            entry[3] = int(outside) if entry[3] is None else entry[3]
    return _by_parent(known.values(), pii, k)


def _max_radius(conn: Connection, params: dict) -> float:
    return float(conn.execute(text("SELECT COALESCE(max(COALESCE(radius_m, :radius_m)), :radius_m) "
                                   "FROM service_centres"), params).scalar_one())


def _by_parent(entries, pii: bool, k: int) -> list[tuple[int, int, int, int]]:
    sums: dict[int, list[int]] = {}
    for parent, n, unlinked, outside in entries:
        s = sums.setdefault(parent, [0, 0, 0])
        s[0] += n
        s[1] += unlinked or 0  # a pending pair with no household left (deleted meanwhile) counts 0
        s[2] += outside or 0
    return [(cell, n, u, o) for cell, (n, u, o) in sorted(sums.items()) if pii or u >= k or o >= k]


def boxes(parent_box: dict[str, float], res: int) -> dict:
    """The parameters of :func:`children_sql`: the parents' box (``px0 … py1``, degrees, from
    :func:`geodata.store.tiles._cell_box`) and the box holding their resolution-10 descendants' centres
    (``cx0 … cy1``): the parents' box widened by twice the parents' mean edge length."""
    reach_m = 2.0 * h3.average_hexagon_edge_length(res, "m")
    dlat = reach_m / 110_540.0
    lat = max(abs(parent_box["cy0"]), abs(parent_box["cy1"])) + dlat
    dlon = reach_m / (111_320.0 * max(math.cos(math.radians(min(lat, 89.9))), 1e-6))
    return {"pres": res, "px0": parent_box["cx0"], "py0": parent_box["cy0"], "px1": parent_box["cx1"],
            "py1": parent_box["cy1"], "cres": POINT_RES,
            "cx0": parent_box["cx0"] - dlon, "cy0": max(parent_box["cy0"] - dlat, -90.0),
            "cx1": parent_box["cx1"] + dlon, "cy1": min(parent_box["cy1"] + dlat, 90.0)}
