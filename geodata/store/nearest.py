"""Nearest responders (就近派单) in PostGIS: a KNN scan of an n-D GiST index of points on the sphere.

Each member's WGS84 point is taken onto the sphere of mean radius 6,371,008.8 m (the same as
``gridmap.metric.haversine_m``) as a 3-D point in metres (``gridmap_sphere_xyz``, migration 0020). The
straight-line (chord) distance between two such points ranks them exactly as the great-circle distance
does, and ``<<->>`` walks the n-D index nearest first with plain arithmetic; ``distance_m`` is the
great-circle distance in metres computed from the chord, never degrees. A radius bounds the same
index scan (``ST_3DDWithin`` on the chord of the radius, then exactly on the sphere). Ties are broken
by ``member_id`` (byte order, ``COLLATE "C"``), as ``gridmap.dispatch.rank`` does. Coordinates WGS84
(EPSG:4326) degrees.

Where a search reads: members are partitioned by street (街道, migration 0014). A pool of grids lying
in one street (an incident's grid, community or street tier, a street's dispatcher) names that street
(``m.street_code = :street``), and PostgreSQL reads only its partition, pruned when the executor
starts, so a prepared statement's generic plan prunes too (issue 18). The street is taken from the
pool's grids the way members get theirs (grid → community → street, :data:`POOL_STREET_SQL`), so the
answer never changes. Every other search (no pool, or a pool across streets) reads the unpartitioned
``responder_index`` that triggers keep equal to ``members`` (0020): one index scan instead of a merge
over every street's partition, a third of the database's CPU.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine


@lru_cache(maxsize=8)
def reader_engine(url: str, pool_size: int = 10) -> Engine:
    """An autocommit engine for single-statement reads (incident lists, a responder's incidents).

    Autocommit spares the BEGIN/ROLLBACK round trips of the shared engine. The pre-ping stays: the
    busiest read (``/responders/nearest``) moved to :mod:`geodata.store.pool` (issue 19), and without
    it a connection that died with the server (or was terminated) answered its next request 503.
    """
    return create_engine(url, isolation_level="AUTOCOMMIT", pool_size=pool_size, max_overflow=pool_size,
                         pool_pre_ping=True, pool_recycle=1800, connect_args={"connect_timeout": 5})


POINT_SQL = "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography"

#: Mean Earth radius in metres (IUGG), as ``gridmap.metric.EARTH_RADIUS_M`` and ``gridmap_sphere_xyz``.
SPHERE_R_M = 6371008.8
#: The query point and a member's point on the sphere as 3-D points in metres (migration 0020); the
#: member's expression is the one the n-D GiST indexes hold, so the planner walks them nearest first.
POINT_XYZ = "gridmap_sphere_xyz(:lon, :lat)"
MEMBER_XYZ = "gridmap_sphere_xyz(ST_X(m.geom), ST_Y(m.geom))"
#: Straight-line (chord) distance in metres: ranks exactly as the great-circle distance does.
CHORD = f"({MEMBER_XYZ} <<->> {POINT_XYZ})"
#: Great-circle distance in metres on the sphere, from the chord (monotone in it).
DISTANCE = f"(2 * {SPHERE_R_M} * asin(least(1.0, {CHORD} / (2 * {SPHERE_R_M}))))"
#: The chord of a great-circle radius (``:radius`` metres): the bound of an n-D index range search.
RADIUS_CHORD = f"(2 * {SPHERE_R_M} * sin(least(pi() / 2, :radius / (2 * {SPHERE_R_M}))))"


#: Extra rows fetched by the one-scan KNN query, so that ties at the k-th place can be broken by id
#: without a second scan (see :func:`nearest_responders`).
TIE_MARGIN = 8

_COLUMNS = "m.member_id, m.kind, m.grid_code, m.skills, m.available, ST_X(m.geom) AS lon, ST_Y(m.geom) AS lat"


def _source(street: bool) -> str:
    """Where a search reads: one street's partition of ``members`` (pruned by the condition on the
    partition key), or the unpartitioned ``responder_index`` (migration 0020) — one index instead of a
    nearest-first merge over every street's partition."""
    return "members m" if street else "responder_index m"


def _conditions(skill: bool, radius: bool, pool: bool, only_available: bool, street: bool = False) -> str:
    where = []
    if street:  # first: the partition key, pruned at executor start-up
        where.append("m.street_code = :street")
    if only_available:
        where.append("m.available")
    if skill:
        where.append(":skill = ANY(m.skills)")
    if radius:  # the index's range search on chords, then exactly on the sphere
        where.append(f"ST_3DDWithin({MEMBER_XYZ}, {POINT_XYZ}, {RADIUS_CHORD} * (1 + 1e-9) + 1e-6) "
                     f"AND {DISTANCE} <= :radius")
    if pool:
        where.append("m.grid_code = ANY(:pool)")
    return " AND ".join(where) if where else "true"


def _knn_sql(skill: bool, radius: bool, pool: bool, only_available: bool, street: bool = False) -> str:
    """One KNN index scan: the k + TIE_MARGIN nearest by chord alone (an ``ORDER BY distance,
    member_id`` would make PostgreSQL sort every matching row instead of walking the index)."""
    cond = _conditions(skill, radius, pool, only_available, street)
    return (f"SELECT {_COLUMNS}, {DISTANCE} AS distance_m FROM {_source(street)} WHERE {cond} "
            f"ORDER BY {CHORD} LIMIT :kk")


def _nearest_sql(skill: bool, radius: bool, pool: bool, only_available: bool, street: bool = False) -> str:
    """The exact ranking in two index scans, for when more than TIE_MARGIN responders tie at the
    k-th place: (1) a KNN scan finds the k-th smallest distance D; (2) an n-D range scan fetches
    everyone within D (a hair more, then cut at exactly D on the sphere), so every member tied at
    the k-th place is seen and the id decides among them."""
    cond = _conditions(skill, radius, pool, only_available, street)
    src = _source(street)
    return (
        f"WITH knn AS (SELECT {DISTANCE} AS d, {CHORD} AS c FROM {src} WHERE {cond} ORDER BY {CHORD} LIMIT :k), "
        "reach AS (SELECT max(d) AS d, max(c) AS c FROM knn) "
        f"SELECT {_COLUMNS}, {DISTANCE} AS distance_m FROM {src}, reach WHERE {cond} "
        f"AND ST_3DDWithin({MEMBER_XYZ}, {POINT_XYZ}, reach.c * (1 + 1e-9) + 1e-6) AND {DISTANCE} <= reach.d "
        f"ORDER BY distance_m, m.member_id COLLATE \"C\" LIMIT :k"
    )


#: Statement variants: which of skill, radius, pool, only_available, street apply (a street only with a pool).
_FLAGS = [(s, r, p, a, t) for s in (False, True) for r in (False, True) for p in (False, True) for a in (False, True)
          for t in ((False, True) if p else (False,))]
Flags = tuple[bool, bool, bool, bool, bool]

#: The streets of a pool's grids, as members get theirs (grid → community → street; NULL for a grid
#: in no street). Grid codes unknown to the store hold no members (foreign key) and add nothing.
POOL_STREET_SQL = ("SELECT DISTINCT c.street_code FROM grids g LEFT JOIN communities c ON c.code = g.community_code "
                   "WHERE g.grid_code = ANY(:pool)")
_POOL_STREET = text(POOL_STREET_SQL)
_KNN_SQL = {f: text(_knn_sql(*f)) for f in _FLAGS}
_NEAREST_SQL = {f: text(_nearest_sql(*f)) for f in _FLAGS}


def one_street(streets) -> str | None:
    """The street every member of a pool lies in (the rows of :data:`POOL_STREET_SQL`), or None when
    the grids lie in several streets or any in none: then nothing is pruned."""
    streets = list(streets)
    return streets[0] if len(streets) == 1 and streets[0] is not None else None


def pool_street(conn: Connection, pool: list[str] | None) -> str | None:
    """:func:`one_street` of the grid codes ``pool`` (one small query; None without a pool)."""
    if not pool:
        return None
    return one_street(conn.execute(_POOL_STREET, {"pool": list(pool)}).scalars())


def knn_params(lon: float, lat: float, k: int, skill: str | None, radius_m: float | None,
               pool: list[str] | None, only_available: bool, street: str | None = None) -> tuple[Flags, dict[str, object]]:
    """The statement variant (which filters apply) and the bound values of a nearest-responder query
    (WGS84 degrees; ``radius_m`` metres); shared by the synchronous and the event-loop readers.
    ``street`` (the pool's one street, :func:`one_street`) counts only with a pool."""
    street = street if pool is not None else None
    flags = (skill is not None, radius_m is not None, pool is not None, only_available, street is not None)
    params: dict[str, object] = {"lon": float(lon), "lat": float(lat), "k": int(k), "kk": int(k) + TIE_MARGIN}
    if skill is not None:
        params["skill"] = skill
    if radius_m is not None:
        params["radius"] = float(radius_m)
    if pool is not None:
        params["pool"] = list(pool)
    if street is not None:
        params["street"] = street
    return flags, params


def nearest_responders(conn: Connection, lon: float, lat: float, k: int = 5, skill: str | None = None,
                       radius_m: float | None = None, pool: list[str] | None = None,
                       only_available: bool = True) -> list[dict]:
    """The ``k`` nearest suitable responders (党员 and 网格员) to a WGS84 point, nearest first.

    Parameters
    ----------
    conn : an open connection.
    lon, lat : WGS84 degrees.
    k : how many at most.
    skill : only responders with this skill tag (法律, 医疗 …).
    radius_m : only responders within this many metres (great circle).
    pool : only responders of these grid codes (escalation levels).
    only_available : leave out responders marked unavailable (default).

    Returns
    -------
    list of dict with ``member_id, kind, grid_code, skills, available, lon, lat, distance_m``
    (no name or phone: those are personal data).

    With a pool lying in one street only that street's partition is read (:func:`pool_street`).
    """
    street = pool_street(conn, pool)
    flags, params = knn_params(lon, lat, k, skill, radius_m, pool, only_available, street)
    rows = [dict(r._mapping) for r in conn.execute(_KNN_SQL[flags], params)]
    # Python's str order is code-point order, the same as PostgreSQL's COLLATE "C" on UTF-8.
    rows.sort(key=lambda r: (r["distance_m"], r["member_id"]))
    if len(rows) == params["kk"] and len(rows) > k and rows[-1]["distance_m"] <= rows[k - 1]["distance_m"]:
        # More ties at the k-th place than fetched: rank them all exactly.
        return [dict(r._mapping) for r in conn.execute(_NEAREST_SQL[flags], params)]
    return rows[:k]
