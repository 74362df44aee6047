"""Vector tiles (Mapbox Vector Tile, MVT) straight from PostGIS, and the details of one clicked feature.

Each layer is one SQL statement built around ``ST_AsMVT`` / ``ST_AsMVTGeom`` / ``ST_TileEnvelope``.
``ST_AsMVT`` skips rows whose MVT geometry is NULL (nothing of them reaches the tile), so no statement
filters on it: such a filter made PostgreSQL compute every ``ST_AsMVTGeom`` twice.
Geometries are stored in WGS84 (EPSG:4326) and transformed to Web Mercator (EPSG:3857) only inside
the query; rows are selected with ``geom && <tile envelope in 4326>`` so the stored GiST index is used.

Privacy (个人信息): no tile ever carries a name, phone or ID number, for any role. Households are H3
aggregates below zoom :data:`POINT_MIN_ZOOM` and points from it, but points only for callers allowed
personal data (``pii=True``); for others every aggregate cell with fewer than :data:`K_ANONYMITY`
households is left out (k-anonymity). Members are home points for ``pii=True`` callers, otherwise
aggregated the same way. Region filtering is by grid codes: ``grid_codes=None`` means every region.

H3 cells are stored as BIGINT at resolution 10 (``gridmap.contract.H3_POINT_RES``). Household and member
aggregates are read from ``h3_counts`` (:mod:`geodata.store.cell_counts`, counts per cell, resolution
and grid, rebuilt after a committed write), so a zoom-12 tile reads a few dozen rows, not every
household under it. The gaps layer (:mod:`geodata.store.gap_tiles`) reads the same counts and the per-grid
link figures, and tests one by one only the households a circle's edge or a partly linked grid leaves open;
its live fallback (:func:`_gap_cells_sql`) computes the parent cell at a coarser resolution with bit
operations on the index, a parent's descendants being the contiguous BIGINT range :func:`_child_range_sql`,
so cell counts are complete even where a cell crosses a tile edge. Cell outlines come from the ``h3``
library and are handed back to PostGIS.

Partitions (0014, issue 18): a region-scoped caller's point, incident and gap tiles name the streets
its grids lie in, so PostgreSQL reads only those streets' partitions (and the default one).

Grid figures (households, members, linked households) are read from ``grid_figures``, rebuilt by
:mod:`geodata.store.grid_figures` only after a committed write that changed what they count or show
(freshness marks, :mod:`geodata.store.epochs`), so a grids tile costs about what tipg's does.

Amap (``coords="gcj02"``): the tile address is read in GCJ-02 Web Mercator and every vertex is moved
exactly as :func:`geodata.crs.wgs84_to_gcj02` does — points by the same formula in SQL, H3 cells in
Python, grid outlines precomputed per grid. (A per-tile affine fitted to the shift was measured and
rejected: its worst error over a tile is 3.5 m at z12, 23 cm at z14, 5.7 cm at z15, 0.35 cm at z17.)
Rows are selected by the WGS84 box whose GCJ-02 image covers the tile.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import h3
import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from geodata import crs
from geodata.store import epochs
from geodata.store.cell_counts import parent_sql
from geodata.store.grid_figures import refresh
from geodata.store.partitions import region_streets
from gridmap.contract import (
    DEFAULT_GRID_KIND,
    GRID_BANDS,
    SERVICE_RADIUS_M,
    YELLOW_FRACTION,
)

#: Layers served as tiles.
LAYERS = ("grids", "households", "members", "centres", "incidents", "gaps")
#: Datums a tile can be drawn in: WGS84 as stored, or GCJ-02 for Amap base maps.
TILE_COORDS = ("wgs84", "gcj02")
#: Highest zoom served (a z-22 tile is ~10 m across at Chinese latitudes).
MAX_ZOOM = 22
#: From this zoom, callers allowed personal data get household points instead of H3 cells.
POINT_MIN_ZOOM = 16
#: From this zoom, callers allowed personal data get member home points instead of H3 cells.
MEMBER_POINT_MIN_ZOOM = 14
#: Cells with fewer households (or members) than this are never sent to callers without PII rights.
K_ANONYMITY = 5
#: MVT extent and buffer (tile pixels at 4096 per tile side).
EXTENT, BUFFER = 4096, 64
#: H3 resolution of the aggregate cells at each zoom (res 7 ≈ 2.5 km across, res 10 ≈ 130 m).
_RES_BY_ZOOM = {10: 6, 11: 6, 12: 7, 13: 8, 14: 8, 15: 9}
_H3_POINT_RES = 10


def tile_exists(z: int, x: int, y: int) -> bool:
    """Whether z/x/y names a tile of the Web Mercator pyramid (0 ≤ x, y < 2**z, 0 ≤ z ≤ MAX_ZOOM)."""
    return 0 <= z <= MAX_ZOOM and 0 <= x < 2 ** z and 0 <= y < 2 ** z


def cell_res(z: int) -> int:
    """H3 resolution of the aggregate cells drawn at zoom ``z`` (5 below zoom 10, 10 from zoom 16)."""
    if z < 10:
        return 5
    return _RES_BY_ZOOM.get(z, _H3_POINT_RES)


def etag(body: bytes, coords: str = "wgs84") -> str:
    """A strong ETag for a tile body in ``coords`` (its contents decide it, so a changed grid changes the
    tag; the coordinate system is hashed in too, so a GCJ-02 tile never matches a WGS84 one's tag)."""
    return '"' + hashlib.blake2b(coords.encode() + b"\0" + body, digest_size=16).hexdigest() + '"'


# -- SQL building blocks ---------------------------------------------------------------------------
_ENV = "ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4326)"
#: The WGS84 box whose GCJ-02 image covers the tile (and its buffer): see :func:`_gcj02_preimage_box`.
_ENV_GCJ02 = "ST_MakeEnvelope(:wx0, :wy0, :wx1, :wy1, 4326)"
_MVT_GEOM = "ST_AsMVTGeom(ST_Transform({g}, 3857), ST_TileEnvelope(:z, :x, :y), {e}, {b}, true)".format(
    g="{g}", e=EXTENT, b=BUFFER)


def _mvt_geom(column: str = "geom") -> str:
    return _MVT_GEOM.format(g=column)


def _env(shifted: bool) -> str:
    """SQL of the WGS84 box that selects a tile's rows (GiST ``&&``), for plain or GCJ-02 tiles."""
    return _ENV_GCJ02 if shifted else _ENV


def _point_geom(column: str, shifted: bool) -> str:
    """MVT geometry of a WGS84 point column, shifted exactly to GCJ-02 (in SQL) when ``shifted``."""
    return _mvt_geom(_gcj02_point_sql(column) if shifted else column)


def _parent_sql(col: str) -> str:
    """SQL of the parent H3 index at resolution ``:res`` of a resolution-10 BIGINT index."""
    return parent_sql(col, ":res")


def _child_range_sql(parent: str) -> tuple[str, str]:
    """Lowest and highest resolution-10 descendant of ``parent`` (an index at ``:res``) as BIGINT SQL:
    every resolution-10 index in between is a descendant, so ``h3 BETWEEN lo AND hi`` uses the B-tree."""
    unused_10 = "((1::bigint << 15) - 1)"  # digits 11–15 of a resolution-10 index are all 7
    base = f"(({parent} & ~(15::bigint << 52)) | (10::bigint << 52))"
    lo = f"(({base} & ~((1::bigint << (3 * (15 - CAST(:res AS int)))) - 1)) | {unused_10})"
    return lo, base


def _region_sql(codes: list[str] | None, col: str = "grid_code") -> str:
    """The caller's grids (``:codes``); nothing for an every-region caller."""
    return "" if codes is None else f" AND {col} = ANY(:codes)"


def _street_sql(codes: list[str] | None, alias: str = "") -> str:
    """Partition pruning (issue 18) for a region-scoped caller: only the partitions of the streets
    ``:streets_of`` and the default partition (rows in no street). Nothing for an every-region caller."""
    col = f"{alias}.street_code" if alias else "street_code"
    return "" if codes is None else f" AND ({col} = ANY(:streets_of) OR {col} IS NULL)"


# -- GCJ-02 (Amap) ---------------------------------------------------------------------------------
# The forward formulas of geodata.crs.wgs84_to_gcj02 as one SQL expression (no PL/pgSQL), so points are
# shifted exactly inside the tile query. {x}/{y} are replaced by the point's WGS84 lon/lat in degrees.
_GCJ_T_LAT = ("(-100.0 + 2.0*({x}-105.0) + 3.0*({y}-35.0) + 0.2*({y}-35.0)^2 + 0.1*({x}-105.0)*({y}-35.0)"
              " + 0.2*sqrt(abs({x}-105.0))"
              " + (20.0*sin(6.0*({x}-105.0)*pi()) + 20.0*sin(2.0*({x}-105.0)*pi()))*2.0/3.0"
              " + (20.0*sin(({y}-35.0)*pi()) + 40.0*sin(({y}-35.0)/3.0*pi()))*2.0/3.0"
              " + (160.0*sin(({y}-35.0)/12.0*pi()) + 320.0*sin(({y}-35.0)*pi()/30.0))*2.0/3.0)")
_GCJ_T_LON = ("(300.0 + ({x}-105.0) + 2.0*({y}-35.0) + 0.1*({x}-105.0)^2 + 0.1*({x}-105.0)*({y}-35.0)"
              " + 0.1*sqrt(abs({x}-105.0))"
              " + (20.0*sin(6.0*({x}-105.0)*pi()) + 20.0*sin(2.0*({x}-105.0)*pi()))*2.0/3.0"
              " + (20.0*sin(({x}-105.0)*pi()) + 40.0*sin(({x}-105.0)/3.0*pi()))*2.0/3.0"
              " + (150.0*sin(({x}-105.0)/12.0*pi()) + 300.0*sin(({x}-105.0)/30.0*pi()))*2.0/3.0)")
_GCJ_MAGIC = "(1.0 - {ee}*sin(radians({y}))^2)"
_GCJ_POINT = ("CASE WHEN {x} BETWEEN {minx} AND {maxx} AND {y} BETWEEN {miny} AND {maxy} THEN ST_SetSRID(ST_MakePoint("
              "{x} + ({tlon}*180.0) / ({a}/sqrt({magic})*cos(radians({y}))*pi()),"
              " {y} + ({tlat}*180.0) / (({a}*(1.0-{ee}))/({magic}*sqrt({magic}))*pi())), 4326) ELSE {g} END")


def _gcj02_point_sql(column: str) -> str:
    """SQL expression: the WGS84 point ``column`` shifted to GCJ-02 (degrees, SRID 4326), exactly as
    :func:`geodata.crs.wgs84_to_gcj02` (points outside :data:`geodata.crs.CHINA_BBOX` unchanged)."""
    xy = {"x": f"ST_X({column})", "y": f"ST_Y({column})"}
    minx, miny, maxx, maxy = crs.CHINA_BBOX
    magic = _GCJ_MAGIC.format(ee=repr(crs._EE), **xy)
    return _GCJ_POINT.format(g=column, minx=minx, miny=miny, maxx=maxx, maxy=maxy, a=repr(crs._A), ee=repr(crs._EE),
                             magic=magic, tlat=_GCJ_T_LAT.format(**xy), tlon=_GCJ_T_LON.format(**xy), **xy)


def _tile_bounds(z: int, x: int, y: int, margin: float) -> tuple[float, float, float, float]:
    """WGS84 bounds (degrees: west, south, east, north) of tile z/x/y widened by ``margin`` tile sides."""
    n = 2 ** z
    lon = [((x - margin) / n) * 360.0 - 180.0, ((x + 1 + margin) / n) * 360.0 - 180.0]
    lat = [math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n)))) for row in (y + 1 + margin, y - margin)]
    return lon[0], lat[0], lon[1], lat[1]


def _gcj02_preimage_box(z: int, x: int, y: int) -> dict[str, float]:
    """The WGS84 box (``wx0, wy0, wx1, wy1`` in degrees) of every point whose GCJ-02 image lies in tile
    z/x/y or its buffer: the tile's edge points taken back to WGS84, boxed, padded by 1 % of the tile
    (the shift bends a tile edge by far less than that)."""
    w, s, e, n = _tile_bounds(z, x, y, BUFFER / EXTENT)
    t = np.linspace(0.0, 1.0, 9)
    lon = np.concatenate([w + (e - w) * t, w + (e - w) * t, np.full(9, w), np.full(9, e)])
    lat = np.concatenate([np.full(9, s), np.full(9, n), s + (n - s) * t, s + (n - s) * t])
    back_lon, back_lat = crs.gcj02_to_wgs84(lon, lat)
    pad_x, pad_y = 0.01 * (e - w), 0.01 * (n - s)
    return {"wx0": float(back_lon.min() - pad_x), "wy0": float(back_lat.min() - pad_y),
            "wx1": float(back_lon.max() + pad_x), "wy1": float(back_lat.max() + pad_y)}


# -- layers ---------------------------------------------------------------------------------------
def _grids_sql(codes, shifted: bool = False) -> str:
    """Grids with their community name, household/member counts, link coverage and status, all from
    ``grid_figures`` (one GiST scan of one table, like tipg's), which
    :func:`geodata.store.grid_figures.ensure_fresh` keeps current: it holds each grid's figures, its
    columns and community name, its outline in Web Mercator (EPSG:3857) and, for GCJ-02 tiles, the outline
    shifted vertex by vertex (EPSG:4326 degrees)."""
    if shifted:
        box, geom = f"ST_Transform({_ENV_GCJ02}, 3857)", "ST_Transform(f.geom_gcj02, 3857)"
    else:
        box, geom = "ST_TileEnvelope(:z, :x, :y, margin => :margin)", "f.geom_3857"
    return f"""
    WITH s AS (
      SELECT f.grid_code, f.name, f.community_code, f.community_name, f.households, f.members,
             f.linked_households AS linked, {geom} AS geom, COALESCE(f.has_branch, true) AS branch,
             CASE WHEN COALESCE(f.kind, :default_kind) = 'rural' THEN :rural_min ELSE :urban_min END AS band_min,
             CASE WHEN COALESCE(f.kind, :default_kind) = 'rural' THEN :rural_max ELSE :urban_max END AS band_max
      FROM grid_figures f
      WHERE f.geom_3857 && {box}{_region_sql(codes, 'f.grid_code')}
    ), t AS (
      SELECT grid_code AS code, name, community_code, community_name, households::int, members::int,
             CASE WHEN households > 0 THEN round(100.0 * linked / households, 1)::float END AS link_coverage_pct,
             CASE WHEN NOT branch AND households > 0 AND members = 0 THEN 'no branch, no members'
                  WHEN NOT branch THEN 'no branch'
                  WHEN households > 0 AND members = 0 THEN 'no members' END AS blank_reason,
             CASE WHEN NOT branch OR (households > 0 AND members = 0) THEN 'blank'
                  WHEN households > band_max THEN 'over-size'
                  WHEN households < band_min THEN 'under-size' ELSE 'ok' END AS status,
             ST_AsMVTGeom(geom, ST_TileEnvelope(:z, :x, :y), {EXTENT}, {BUFFER}, true) AS geom
      FROM s
    )
    SELECT ST_AsMVT(t, 'grids', {EXTENT}, 'geom') FROM t"""


def _grid_params() -> dict:
    (umin, umax), (rmin, rmax) = GRID_BANDS["urban"], GRID_BANDS["rural"]
    return {"default_kind": DEFAULT_GRID_KIND, "urban_min": umin, "urban_max": umax,
            "rural_min": rmin, "rural_max": rmax}


def _points_sql(layer: str, table: str, columns: str, codes, shifted: bool = False) -> str:
    return f"""
    WITH t AS (SELECT {columns}, {_point_geom('geom', shifted)} AS geom FROM {table}
               WHERE geom && {_env(shifted)}{_region_sql(codes)}{_street_sql(codes)})
    SELECT ST_AsMVT(t, '{layer}', {EXTENT}, 'geom') FROM t"""


def _cells_sql(codes, pii: bool) -> str:
    """Counts per H3 cell at ``:res`` of the cells whose centre lies in the box ``:cx0 … :cy1`` (the tile
    widened by a cell's reach, :func:`_cell_box`), from ``h3_counts`` (:mod:`geodata.store.cell_counts`),
    summed over the caller's grids: each cell carries its full count (also households beyond the tile
    edge). Cells under ``:k`` are dropped unless ``pii``."""
    region = "" if codes is None else " AND grid_code = ANY(:codes)"
    having = "" if pii else " HAVING sum(n) >= :k"
    return f"""
    SELECT cell, sum(n) AS n FROM h3_counts
    WHERE centre &&& ST_SetSRID(ST_3DMakeBox(ST_MakePoint(:cx0, :cy0, :res), ST_MakePoint(:cx1, :cy1, :res))::geometry,
                                4326)
      AND layer = :layer AND res = :res{region}
    GROUP BY cell{having}"""


def _cell_box(z: int, x: int, y: int, res: int, shifted: bool) -> dict[str, float]:
    """WGS84 box (``cx0, cy0, cx1, cy1``, degrees) holding the centre of every H3 cell at ``res`` that
    reaches into tile z/x/y or its buffer (for GCJ-02 tiles, into the tile's WGS84 preimage): the tile
    widened by twice the cell's mean edge length (a hexagon's centre-to-corner distance is its edge)."""
    if shifted:
        box = _gcj02_preimage_box(z, x, y)
        w, s, e, n = box["wx0"], box["wy0"], box["wx1"], box["wy1"]
    else:
        w, s, e, n = _tile_bounds(z, x, y, BUFFER / EXTENT)
    reach_m = 2.0 * h3.average_hexagon_edge_length(res, "m")
    dlat = reach_m / 110_540.0
    dlon = reach_m / (111_320.0 * max(math.cos(math.radians(max(abs(s), abs(n)) + dlat)), 1e-6))
    return {"cx0": w - dlon, "cy0": max(s - dlat, -90.0), "cx1": e + dlon, "cy1": min(n + dlat, 90.0)}


def _gap_cells_sql(codes, pii: bool, shifted: bool = False) -> str:
    """Per H3 cell: households, unlinked households (no link in a current 包片联户 run) and households
    outside every service centre's circle (``radius_m`` or ``:radius_m`` metres, on the sphere). The box
    around each household (the largest radius turned into degrees, 1 % wider) only lets the GiST index
    pick candidate centres; the test itself is ``ST_DWithin`` on geography, in metres."""
    lo, hi = _child_range_sql("c.cell")
    keep = "" if pii else " WHERE unlinked >= :k OR outside >= :k"
    return f"""
    WITH r AS (SELECT 1.01 * COALESCE(max(COALESCE(radius_m, :radius_m)), :radius_m) + 1 AS max_m
               FROM service_centres),
         c AS (SELECT DISTINCT {_parent_sql('h3')} AS cell FROM households
               WHERE geom && {_env(shifted)}{_region_sql(codes)}{_street_sql(codes)}),
         h AS (SELECT c.cell, p.household_id, p.geom FROM c JOIN households p
               ON p.h3 BETWEEN {lo} AND {hi}{_region_sql(codes, 'p.grid_code')}{_street_sql(codes, 'p')}),
         f AS (SELECT h.cell,
                      NOT EXISTS (SELECT 1 FROM links l JOIN link_runs r ON r.run_id = l.run_id AND r.is_current
                                  WHERE l.household_id = h.household_id{_street_sql(codes, 'l')}) AS unlinked,
                      NOT EXISTS (SELECT 1 FROM service_centres s
                                  WHERE s.geom && ST_Expand(h.geom, r.max_m / (111320.0 * cos(radians(ST_Y(h.geom)))),
                                                            r.max_m / 110540.0)
                                    AND ST_DWithin(s.geom::geography, h.geom::geography,
                                                   COALESCE(s.radius_m, :radius_m))) AS outside
               FROM h, r),
         n AS (SELECT cell, count(*) AS n, count(*) FILTER (WHERE unlinked) AS unlinked,
                      count(*) FILTER (WHERE outside) AS outside FROM f GROUP BY cell)
    SELECT cell, n, unlinked, outside FROM n{keep}"""


def _cells_tile(conn: Connection, layer: str, rows: Sequence[Sequence], names: tuple[str, ...], params: dict,
                pii: bool, shifted: bool = False) -> bytes:
    """MVT of H3 cell polygons with integer properties ``names`` (one value per name in each row after
    the cell); for callers without PII rights counts under ``K_ANONYMITY`` become absent (NULL). With
    ``shifted`` every outline vertex is moved to GCJ-02 exactly (:func:`geodata.crs.wgs84_to_gcj02`)."""
    if not rows:
        return b""
    cells, wkts = [], []
    columns: list[list[int | None]] = [[] for _ in names]
    for row in rows:
        cell = h3.int_to_str(int(row[0]))
        cells.append(cell)
        ring = [(lng, lat) for lat, lng in h3.cell_to_boundary(cell)]
        if shifted:
            ring = list(zip(*crs.wgs84_to_gcj02([p[0] for p in ring], [p[1] for p in ring])))
        ring.append(ring[0])
        wkts.append("POLYGON((" + ",".join(f"{x:.9f} {y:.9f}" for x, y in ring) + "))")
        for i, value in enumerate(row[1:]):
            value = int(value)
            columns[i].append(value if pii or value >= K_ANONYMITY or value == 0 else None)
    selects = ", ".join(f"u.v{i}::int AS {name}" for i, name in enumerate(names))
    arrays = ", ".join(f"CAST(:v{i} AS bigint[])" for i in range(len(names)))
    aliases = ", ".join(f"v{i}" for i in range(len(names)))
    sql = f"""
    WITH t AS (SELECT u.cell, {selects}, {_mvt_geom('ST_GeomFromText(u.wkt, 4326)')} AS geom
               FROM unnest(CAST(:cells AS text[]), CAST(:wkts AS text[]), {arrays}) AS u(cell, wkt, {aliases}))
    SELECT ST_AsMVT(t, '{layer}', {EXTENT}, 'geom') FROM t"""
    values = {f"v{i}": col for i, col in enumerate(columns)}
    return bytes(conn.execute(text(sql), {**params, "cells": cells, "wkts": wkts, **values}).scalar() or b"")


def _incidents_sql(codes, shifted: bool = False) -> str:
    """Incidents with category, status, level and 红黄绿灯 light at ``:at`` (as ``gridmap.dispatch.light``:
    red past the deadline, yellow in the last ``:yellow`` of the window, closed ones judged at closing)."""
    region = "" if codes is None else (" AND (grid_code = ANY(:codes) OR community_code = ANY(:comms)"
                                       " OR street_code = ANY(:streets))" + _street_sql(codes))
    return f"""
    WITH i AS (SELECT *, COALESCE(closed_at, :at) AS t FROM incidents
               WHERE geom && {_env(shifted)}{region}),
         t AS (SELECT incident_id AS id, category, status, level,
                      CASE WHEN deadline_at IS NULL OR (status IN ('closed', 'rated') AND closed_at IS NULL) THEN NULL
                           WHEN t > deadline_at THEN 'red'
                           WHEN t >= deadline_at - (deadline_at - reported_at) * :yellow THEN 'yellow'
                           ELSE 'green' END AS light,
                      {_point_geom('geom', shifted)} AS geom FROM i)
    SELECT ST_AsMVT(t, 'incidents', {EXTENT}, 'geom') FROM t"""


def _centres_sql(codes, shifted: bool = False) -> str:
    """Service centres (党群服务中心) with their radius in metres; a region sees those inside its grids."""
    region = "" if codes is None else (" AND EXISTS (SELECT 1 FROM grids g WHERE g.grid_code = ANY(:codes)"
                                       " AND ST_Intersects(g.geom, s.geom))")
    return f"""
    WITH t AS (SELECT s.centre_id AS id, s.name, s.kind, COALESCE(s.radius_m, :radius_m)::float AS radius_m,
                      {_point_geom('s.geom', shifted)} AS geom
               FROM service_centres s WHERE s.geom && {_env(shifted)}{region})
    SELECT ST_AsMVT(t, 'centres', {EXTENT}, 'geom') FROM t"""


# -- the entry point ------------------------------------------------------------------------------
# More than ten arguments on purpose: tile address plus the route's region and query parameters.
def render_tile(engine: Engine, layer: str, z: int, x: int, y: int, *, grid_codes=None, community_codes=None,  # noqa: PLR0913
                street_codes=None, pii: bool = False, at: datetime | None = None,
                radius_m: float = SERVICE_RADIUS_M, coords: str = "wgs84") -> bytes:
    """One MVT tile of ``layer`` (empty bytes when nothing is in it).

    Parameters
    ----------
    layer : str
        One of :data:`LAYERS`.
    z, x, y : int
        Tile address in the Web Mercator (EPSG:3857) pyramid; check with :func:`tile_exists` first.
    grid_codes, community_codes, street_codes : iterable of str or None
        The caller's regions expanded to codes; ``grid_codes=None`` means every region.
    pii : bool
        Whether the caller may see residents' and members' locations (still never names, phones or ID
        numbers): household points from zoom 16, member points from zoom 14, and no k-anonymity cut.
    at : datetime, optional
        Time the incidents' lights are judged at (default now).
    radius_m : float
        Service radius in metres of centres without their own ``radius_m`` (gaps layer).
    coords : {"wgs84", "gcj02"}
        Datum of the tile: ``gcj02`` for Amap base maps — the tile address is then read in GCJ-02 Web
        Mercator and every vertex is shifted exactly as :func:`geodata.crs.wgs84_to_gcj02` (points in
        SQL, H3 cells in Python, grid outlines precomputed in ``grid_figures``).
    """
    if layer not in LAYERS:
        raise ValueError(f"unknown tile layer {layer!r}; layers are {', '.join(LAYERS)}")
    if coords not in TILE_COORDS:
        raise ValueError(f"unknown tile coordinates {coords!r}; use one of {', '.join(TILE_COORDS)}")
    shifted = coords == "gcj02"
    codes = None if grid_codes is None else sorted(grid_codes)
    params = {"z": z, "x": x, "y": y, "margin": BUFFER / EXTENT, "codes": codes, "res": cell_res(z),
              "k": K_ANONYMITY, "radius_m": float(radius_m),
              "comms": sorted(community_codes or ()), "streets": sorted(street_codes or ())}
    if shifted:
        params.update(_gcj02_preimage_box(z, x, y))
    fresh = layer in ("grids", "households", "members", "gaps")  # drawn from grid_figures / h3_counts
    body = _render_once(engine, layer, z, codes, params, pii, at, shifted, fresh)
    if body is None:  # a committed write since the last rebuild: grid figures and H3 counts first
        refresh(engine)
        body = _render_once(engine, layer, z, codes, params, pii, at, shifted, False)
    return body or b""


# One statement per tile where it can be (under load every round trip waits for the server to be
# scheduled again): it also says whether grid_figures / h3_counts are stale (their freshness marks,
# geodata.store.epochs.GRID_FIGURES), and it calls set_config, which PostgreSQL labels PARALLEL UNSAFE,
# so no parallel workers are planned — a tile reads a few hundred rows, and starting workers cost 10×
# the query (a z16 households tile at 1M households: 122 ms with them, 13 ms without). The connection is
# in autocommit: no BEGIN / ROLLBACK round trips, and the setting ends with the statement.
_SERIAL = "set_config('max_parallel_workers_per_gather', '0', true)"


def _stale_sql(check_fresh: bool) -> str:
    return epochs.stale_sql(epochs.GRID_FIGURES) if check_fresh else "false"


def _render_once(engine: Engine, layer: str, z: int, codes, params: dict, pii: bool, at, shifted: bool,  # noqa: PLR0913
                 check_fresh: bool) -> bytes | None:
    """The tile, or None when ``check_fresh`` and the derived tables are stale (nothing drawn then)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return _render(conn, layer, z, codes, params, pii, at, shifted, check_fresh)


def _reads_partitions(layer: str, z: int, pii: bool) -> bool:
    """Whether the tile reads the tables partitioned by street (0014) — points, incidents, gaps — rather
    than derived per-grid or per-cell tables; region-scoped tiles then read only their streets."""
    return (layer in ("incidents", "gaps") or (layer == "households" and pii and z >= POINT_MIN_ZOOM)
            or (layer == "members" and pii and z >= MEMBER_POINT_MIN_ZOOM))


def _render(conn: Connection, layer: str, z: int, codes, params: dict, pii: bool, at, shifted: bool,  # noqa: PLR0913
            check_fresh: bool) -> bytes | None:
    if codes is not None and _reads_partitions(layer, z, pii):
        params = {**params, "streets_of": region_streets(conn, codes, params["comms"], params["streets"])}
    if layer == "grids":
        sql, params = _grids_sql(codes, shifted), {**params, **_grid_params()}
    elif layer == "households" and pii and z >= POINT_MIN_ZOOM:
        sql = _points_sql("households", "households", "household_id AS id, grid_code, size", codes, shifted)
    elif layer == "members" and pii and z >= MEMBER_POINT_MIN_ZOOM:
        sql = _points_sql("members", "members", "member_id AS id, grid_code, kind, available", codes, shifted)
    elif layer in ("households", "members"):
        res = min(cell_res(z), _H3_POINT_RES)
        params = {**params, "res": res, "layer": layer, **_cell_box(z, params["x"], params["y"], res, shifted)}
        stale, _, cells, counts = conn.execute(text(
            f"WITH q AS ({_cells_sql(codes, pii)}) SELECT {_stale_sql(check_fresh)}, {_SERIAL}, "
            "ARRAY(SELECT cell FROM q ORDER BY cell), ARRAY(SELECT n FROM q ORDER BY cell)"), params).one()
        return None if stale else _cells_tile(conn, layer, list(zip(cells, counts)), ("n",), params, pii, shifted)
    elif layer == "gaps":
        return _gaps_tile(conn, z, codes, params, pii, shifted, check_fresh)
    elif layer == "incidents":
        sql = _incidents_sql(codes, shifted)
        params = {**params, "at": at or datetime.now(UTC), "yellow": YELLOW_FRACTION}
    else:
        sql = _centres_sql(codes, shifted)
    stale, _, body = conn.execute(text(f"SELECT {_stale_sql(check_fresh)}, {_SERIAL}, ({sql})"), params).one()
    return None if stale else bytes(body or b"")


def _gaps_tile(conn: Connection, z: int, codes, params: dict, pii: bool, shifted: bool,  # noqa: PLR0913
               check_fresh: bool) -> bytes | None:
    """The gaps tile from the cached per-cell counts (:mod:`geodata.store.gap_tiles`), None when they are
    stale; counted live when the cached cells under the tile are incomplete. Its few statements read one
    snapshot (a write committing meanwhile is in all of them or in none)."""
    from geodata.store import gap_tiles

    conn.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    # no JIT: the live fallback's estimates (a probe per household) pass jit_above_cost, and compiling took
    # seconds, longer than the statements (1M households, z12: 6 s of 7)
    conn.exec_driver_sql("SET LOCAL jit = off")
    try:
        if check_fresh and conn.execute(text(f"SELECT {_stale_sql(True)}")).scalar():
            return None
        res = params["res"]
        params = {**params, **gap_tiles.boxes(_cell_box(z, params["x"], params["y"], res, shifted), res)}
        rows = gap_tiles.gap_rows(conn, codes, params, pii, K_ANONYMITY)
        if rows is None:
            rows = [r[:-1] for r in conn.execute(
                text(f"SELECT q.*, {_SERIAL} FROM ({_gap_cells_sql(codes, pii, shifted)}) q"), params).all()]
        return _cells_tile(conn, "gaps", rows, ("households", "unlinked", "outside"), params, pii, shifted)
    finally:
        conn.exec_driver_sql("ROLLBACK")  # read only: nothing to keep


# -- click details --------------------------------------------------------------------------------
_DETAILS_SQL = {
    "grids": """SELECT g.grid_code AS id, g.name, g.kind, g.has_branch, g.branch_name, g.grid_code,
                       g.community_code, c.name AS community_name, c.street_code,
                       (SELECT count(*) FROM households h WHERE h.grid_code = g.grid_code) AS households,
                       (SELECT count(*) FROM members m WHERE m.grid_code = g.grid_code) AS members,
                       (SELECT count(*) FROM households h JOIN links l ON l.household_id = h.household_id
                          JOIN link_runs r ON r.run_id = l.run_id AND r.is_current
                        WHERE h.grid_code = g.grid_code) AS linked_households
                FROM grids g LEFT JOIN communities c ON c.code = g.community_code WHERE g.grid_code = :id""",
    "households": """SELECT household_id AS id, grid_code, size, tags, name, phone, id_number,
                            ST_X(geom) AS lon, ST_Y(geom) AS lat FROM households WHERE household_id = :id""",
    "members": """SELECT member_id AS id, grid_code, kind, skills, available, name, phone,
                         ST_X(geom) AS lon, ST_Y(geom) AS lat FROM members WHERE member_id = :id""",
    "centres": """SELECT s.centre_id AS id, s.name, s.kind, s.radius_m, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat,
                         g.grid_code, g.community_code
                  FROM service_centres s LEFT JOIN LATERAL (SELECT grid_code, community_code FROM grids
                       WHERE ST_Intersects(grids.geom, s.geom) LIMIT 1) g ON true
                  WHERE s.centre_id = :id""",
    "incidents": """SELECT incident_id AS id, category, level, status, required_skill, reported_at, deadline_at,
                           closed_at, grid_code, community_code, street_code, ST_X(geom) AS lon, ST_Y(geom) AS lat
                    FROM incidents WHERE incident_id = :id""",
}


def feature_details(engine: Engine, layer: str, feature_id: str) -> dict | None:
    """One feature of a tile layer as a dict (None when there is none): WGS84 ``lon``/``lat`` for points,
    the region codes it lies in (``grid_code``, ``community_code``, ``street_code`` where known), and for
    households and members their personal data **unmasked** — the caller must mask it.

    Grids add ``households``, ``members``, ``linked_households`` and ``link_coverage_pct`` (0–100).
    """
    sql = _DETAILS_SQL.get(layer)
    if sql is None:
        return None
    with engine.connect() as conn:
        row = conn.execute(text(sql), {"id": feature_id}).mappings().first()
    if row is None:
        return None
    out = dict(row)
    if layer == "grids":
        out["link_coverage_pct"] = (round(100.0 * out["linked_households"] / out["households"], 1)
                                    if out["households"] else None)
    return out
