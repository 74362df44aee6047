"""Vector tiles (Mapbox Vector Tile, MVT) straight from PostGIS, and the details of one clicked feature.

Each layer is one SQL statement built around ``ST_AsMVT`` / ``ST_AsMVTGeom`` / ``ST_TileEnvelope``.
Geometries are stored in WGS84 (EPSG:4326) and transformed to Web Mercator (EPSG:3857) only inside
the query; rows are selected with ``geom && <tile envelope in 4326>`` so the stored GiST index is used.

Privacy (个人信息): no tile ever carries a name, phone or ID number, for any role. Households are H3
aggregates below zoom :data:`POINT_MIN_ZOOM` and points from it, but points only for callers allowed
personal data (``pii=True``); for others every aggregate cell with fewer than :data:`K_ANONYMITY`
households is left out (k-anonymity). Members are home points for ``pii=True`` callers, otherwise
aggregated the same way. Region filtering is by grid codes: ``grid_codes=None`` means every region.

H3 cells are stored as BIGINT at resolution 10 (``gridmap.contract.H3_POINT_RES``); the parent cell at
a coarser resolution is computed with bit operations on the index, and a parent's descendants are the
contiguous BIGINT range :func:`_child_range_sql`, so cell counts are complete even where a cell
crosses a tile edge. Cell outlines come from the ``h3`` library and are handed back to PostGIS.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import h3
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from gridmap.contract import (
    DEFAULT_GRID_KIND,
    GRID_BANDS,
    SERVICE_RADIUS_M,
    YELLOW_FRACTION,
)

#: Layers served as tiles.
LAYERS = ("grids", "households", "members", "centres", "incidents", "gaps")
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


def etag(body: bytes) -> str:
    """A strong ETag for a tile body (its contents decide it, so a changed grid changes the tag)."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


# -- SQL building blocks ---------------------------------------------------------------------------
_ENV = "ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4326)"
_MVT_GEOM = "ST_AsMVTGeom(ST_Transform({g}, 3857), ST_TileEnvelope(:z, :x, :y), {e}, {b}, true)".format(
    g="{g}", e=EXTENT, b=BUFFER)


def _mvt_geom(column: str = "geom") -> str:
    return _MVT_GEOM.format(g=column)


def _parent_sql(col: str) -> str:
    """SQL of the parent H3 index at resolution ``:res`` of a resolution-10 BIGINT index: the resolution
    field (bits 52–55) set to ``res`` and the digits of finer resolutions (3 bits each) set to 7."""
    return (f"(({col} & ~(15::bigint << 52)) | (CAST(:res AS bigint) << 52) "
            f"| ((1::bigint << (3 * (15 - CAST(:res AS int)))) - 1))")


def _child_range_sql(parent: str) -> tuple[str, str]:
    """Lowest and highest resolution-10 descendant of ``parent`` (an index at ``:res``) as BIGINT SQL:
    every resolution-10 index in between is a descendant, so ``h3 BETWEEN lo AND hi`` uses the B-tree."""
    unused_10 = "((1::bigint << 15) - 1)"  # digits 11–15 of a resolution-10 index are all 7
    base = f"(({parent} & ~(15::bigint << 52)) | (10::bigint << 52))"
    lo = f"(({base} & ~((1::bigint << (3 * (15 - CAST(:res AS int)))) - 1)) | {unused_10})"
    return lo, base


def _region_sql(codes: list[str] | None, col: str = "grid_code") -> str:
    return "" if codes is None else f" AND {col} = ANY(:codes)"


# -- layers ---------------------------------------------------------------------------------------
def _grids_sql(codes) -> str:
    """Grids with their community name, household/member counts, link coverage and status."""
    return f"""
    WITH g AS (
      SELECT g.grid_code, g.name, g.community_code, g.kind, g.has_branch, g.geom,
             (SELECT count(*) FROM households h WHERE h.grid_code = g.grid_code) AS households,
             (SELECT count(*) FROM members m WHERE m.grid_code = g.grid_code) AS members,
             (SELECT count(*) FROM households h JOIN links l ON l.household_id = h.household_id
                JOIN link_runs r ON r.run_id = l.run_id AND r.is_current
              WHERE h.grid_code = g.grid_code) AS linked
      FROM grids g WHERE g.geom && {_ENV}{_region_sql(codes, 'g.grid_code')}
    ), s AS (
      SELECT g.*, c.name AS community_name,
             COALESCE(g.has_branch, true) AS branch,
             CASE WHEN COALESCE(g.kind, :default_kind) = 'rural' THEN :rural_min ELSE :urban_min END AS band_min,
             CASE WHEN COALESCE(g.kind, :default_kind) = 'rural' THEN :rural_max ELSE :urban_max END AS band_max
      FROM g LEFT JOIN communities c ON c.code = g.community_code
    ), t AS (
      SELECT grid_code AS code, name, community_code, community_name, households::int, members::int,
             CASE WHEN households > 0 THEN round(100.0 * linked / households, 1)::float END AS link_coverage_pct,
             CASE WHEN NOT branch AND households > 0 AND members = 0 THEN 'no branch, no members'
                  WHEN NOT branch THEN 'no branch'
                  WHEN households > 0 AND members = 0 THEN 'no members' END AS blank_reason,
             CASE WHEN NOT branch OR (households > 0 AND members = 0) THEN 'blank'
                  WHEN households > band_max THEN 'over-size'
                  WHEN households < band_min THEN 'under-size' ELSE 'ok' END AS status,
             {_mvt_geom()} AS geom
      FROM s
    )
    SELECT ST_AsMVT(t, 'grids', {EXTENT}, 'geom') FROM t WHERE geom IS NOT NULL"""


def _grid_params() -> dict:
    (umin, umax), (rmin, rmax) = GRID_BANDS["urban"], GRID_BANDS["rural"]
    return {"default_kind": DEFAULT_GRID_KIND, "urban_min": umin, "urban_max": umax,
            "rural_min": rmin, "rural_max": rmax}


def _points_sql(layer: str, table: str, columns: str, codes) -> str:
    return f"""
    WITH t AS (SELECT {columns}, {_mvt_geom()} AS geom FROM {table}
               WHERE geom && {_ENV}{_region_sql(codes)})
    SELECT ST_AsMVT(t, '{layer}', {EXTENT}, 'geom') FROM t WHERE geom IS NOT NULL"""


def _cells_sql(table: str, codes, pii: bool) -> str:
    """Counts per H3 cell at ``:res`` of the cells that have a point inside the tile, counting every
    point of the cell (also those beyond the tile edge); cells under ``:k`` are dropped unless ``pii``."""
    lo, hi = _child_range_sql("c.cell")
    having = "" if pii else " WHERE n >= :k"
    return f"""
    WITH c AS (SELECT DISTINCT {_parent_sql('h3')} AS cell FROM {table}
               WHERE geom && {_ENV}{_region_sql(codes)}),
         n AS (SELECT c.cell, (SELECT count(*) FROM {table} p
                               WHERE p.h3 BETWEEN {lo} AND {hi}{_region_sql(codes, 'p.grid_code')}) AS n
               FROM c)
    SELECT cell, n FROM n{having}"""


def _gap_cells_sql(codes, pii: bool) -> str:
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
               WHERE geom && {_ENV}{_region_sql(codes)}),
         h AS (SELECT c.cell, p.household_id, p.geom FROM c JOIN households p
               ON p.h3 BETWEEN {lo} AND {hi}{_region_sql(codes, 'p.grid_code')}),
         f AS (SELECT h.cell,
                      NOT EXISTS (SELECT 1 FROM links l JOIN link_runs r ON r.run_id = l.run_id AND r.is_current
                                  WHERE l.household_id = h.household_id) AS unlinked,
                      NOT EXISTS (SELECT 1 FROM service_centres s
                                  WHERE s.geom && ST_Expand(h.geom, r.max_m / (111320.0 * cos(radians(ST_Y(h.geom)))),
                                                            r.max_m / 110540.0)
                                    AND ST_DWithin(s.geom::geography, h.geom::geography,
                                                   COALESCE(s.radius_m, :radius_m))) AS outside
               FROM h, r),
         n AS (SELECT cell, count(*) AS n, count(*) FILTER (WHERE unlinked) AS unlinked,
                      count(*) FILTER (WHERE outside) AS outside FROM f GROUP BY cell)
    SELECT cell, n, unlinked, outside FROM n{keep}"""


def _cells_tile(conn: Connection, layer: str, rows: list[tuple], names: tuple[str, ...], params: dict,
                pii: bool) -> bytes:
    """MVT of H3 cell polygons with integer properties ``names`` (one value per name in each row after
    the cell); for callers without PII rights counts under ``K_ANONYMITY`` become absent (NULL)."""
    if not rows:
        return b""
    cells, wkts = [], []
    columns: list[list[int | None]] = [[] for _ in names]
    for row in rows:
        cell = h3.int_to_str(int(row[0]))
        cells.append(cell)
        ring = [(lng, lat) for lat, lng in h3.cell_to_boundary(cell)]
        ring.append(ring[0])
        wkts.append("POLYGON((" + ",".join(f"{x:.7f} {y:.7f}" for x, y in ring) + "))")
        for i, value in enumerate(row[1:]):
            value = int(value)
            columns[i].append(value if pii or value >= K_ANONYMITY or value == 0 else None)
    selects = ", ".join(f"u.v{i}::int AS {name}" for i, name in enumerate(names))
    arrays = ", ".join(f"CAST(:v{i} AS bigint[])" for i in range(len(names)))
    aliases = ", ".join(f"v{i}" for i in range(len(names)))
    sql = f"""
    WITH t AS (SELECT u.cell, {selects}, {_mvt_geom('ST_GeomFromText(u.wkt, 4326)')} AS geom
               FROM unnest(CAST(:cells AS text[]), CAST(:wkts AS text[]), {arrays}) AS u(cell, wkt, {aliases}))
    SELECT ST_AsMVT(t, '{layer}', {EXTENT}, 'geom') FROM t WHERE geom IS NOT NULL"""
    values = {f"v{i}": col for i, col in enumerate(columns)}
    return bytes(conn.execute(text(sql), {**params, "cells": cells, "wkts": wkts, **values}).scalar() or b"")


def _incidents_sql(codes) -> str:
    """Incidents with category, status, level and 红黄绿灯 light at ``:at`` (as ``gridmap.dispatch.light``:
    red past the deadline, yellow in the last ``:yellow`` of the window, closed ones judged at closing)."""
    region = "" if codes is None else (" AND (grid_code = ANY(:codes) OR community_code = ANY(:comms)"
                                       " OR street_code = ANY(:streets))")
    return f"""
    WITH i AS (SELECT *, COALESCE(closed_at, :at) AS t FROM incidents
               WHERE geom && {_ENV}{region}),
         t AS (SELECT incident_id AS id, category, status, level,
                      CASE WHEN deadline_at IS NULL OR (status IN ('closed', 'rated') AND closed_at IS NULL) THEN NULL
                           WHEN t > deadline_at THEN 'red'
                           WHEN t >= deadline_at - (deadline_at - reported_at) * :yellow THEN 'yellow'
                           ELSE 'green' END AS light,
                      {_mvt_geom()} AS geom FROM i)
    SELECT ST_AsMVT(t, 'incidents', {EXTENT}, 'geom') FROM t WHERE geom IS NOT NULL"""


def _centres_sql(codes) -> str:
    """Service centres (党群服务中心) with their radius in metres; a region sees those inside its grids."""
    region = "" if codes is None else (" AND EXISTS (SELECT 1 FROM grids g WHERE g.grid_code = ANY(:codes)"
                                       " AND ST_Intersects(g.geom, s.geom))")
    return f"""
    WITH t AS (SELECT s.centre_id AS id, s.name, s.kind, COALESCE(s.radius_m, :radius_m)::float AS radius_m,
                      {_mvt_geom('s.geom')} AS geom
               FROM service_centres s WHERE s.geom && {_ENV}{region})
    SELECT ST_AsMVT(t, 'centres', {EXTENT}, 'geom') FROM t WHERE geom IS NOT NULL"""


# -- the entry point ------------------------------------------------------------------------------
def render_tile(engine: Engine, layer: str, z: int, x: int, y: int, *, grid_codes=None, community_codes=None,
                street_codes=None, pii: bool = False, at: datetime | None = None,
                radius_m: float = SERVICE_RADIUS_M) -> bytes:
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
    """
    if layer not in LAYERS:
        raise ValueError(f"unknown tile layer {layer!r}; layers are {', '.join(LAYERS)}")
    codes = None if grid_codes is None else sorted(grid_codes)
    params = {"z": z, "x": x, "y": y, "margin": BUFFER / EXTENT, "codes": codes, "res": cell_res(z),
              "k": K_ANONYMITY, "radius_m": float(radius_m),
              "comms": sorted(community_codes or ()), "streets": sorted(street_codes or ())}
    with engine.connect() as conn:
        return _render(conn, layer, z, codes, params, pii, at)


def _render(conn: Connection, layer: str, z: int, codes, params: dict, pii: bool, at) -> bytes:
    if layer == "grids":
        sql, params = _grids_sql(codes), {**params, **_grid_params()}
    elif layer == "households" and pii and z >= POINT_MIN_ZOOM:
        sql = _points_sql("households", "households", "household_id AS id, grid_code, size", codes)
    elif layer == "members" and pii and z >= MEMBER_POINT_MIN_ZOOM:
        sql = _points_sql("members", "members", "member_id AS id, grid_code, kind, available", codes)
    elif layer in ("households", "members"):
        params = {**params, "res": min(cell_res(z), _H3_POINT_RES)}
        rows = conn.execute(text(_cells_sql(layer, codes, pii)), params).all()
        return _cells_tile(conn, layer, rows, ("n",), params, pii)
    elif layer == "gaps":
        rows = conn.execute(text(_gap_cells_sql(codes, pii)), params).all()
        return _cells_tile(conn, layer, rows, ("households", "unlinked", "outside"), params, pii)
    elif layer == "incidents":
        sql = _incidents_sql(codes)
        params = {**params, "at": at or datetime.now(UTC), "yellow": YELLOW_FRACTION}
    else:
        sql = _centres_sql(codes)
    return bytes(conn.execute(text(sql), params).scalar() or b"")


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
