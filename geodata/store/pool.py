"""Async reads for the HTTP hot paths: a psycopg ``AsyncConnectionPool`` with prepared statements.

The pages and the dispatch desk call ``/responders/nearest``, ``/me/households``, the tiles and
``/health`` far more often than anything else. Through SQLAlchemy and the thread pool each request
cost several times its query (issue 19). Here the same statements run on plain psycopg connections
in the event loop: autocommit (no BEGIN/ROLLBACK round trips), ``prepare_threshold=0`` and generic
plans (each statement is parsed and planned once per connection, :data:`PLAN_OPTIONS`), rows as dicts.

The statements are those of the synchronous store (:mod:`geodata.store.nearest`,
:mod:`geodata.store.links`, :mod:`geodata.store.auth`) in psycopg's parameter style; the tests
check both give the same rows. Found tokens and region expansions go into the same TTL cache as the
synchronous look-ups (:func:`geodata.store.auth._cached`), under the same keys.

Coordinates WGS84 (EPSG:4326) degrees; distances metres on the sphere.
"""

from __future__ import annotations

import re
from functools import lru_cache
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from geodata.store import auth
from geodata.store.nearest import _FLAGS, POOL_STREET_SQL, _knn_sql, _nearest_sql, knn_params, one_street
from geodata.store.links import MEMBER_HOUSEHOLDS_SQL as _MEMBER_HOUSEHOLDS_SQL  # one query, two drivers

T = TypeVar("T")

#: Seconds a request waits for a pooled connection (or a new one) before giving up with
#: ``psycopg.OperationalError`` (the app answers 503).
CONNECT_TIMEOUT_S = 5.0
#: Generic plans for every prepared statement of the pool: these statements are short and their plans do
#: not depend on the values bound (a KNN walk of an index, look-ups by key, partitions pruned when the
#: executor starts). PostgreSQL's default chose custom plans for the nearest-responder statement and so
#: planned it again on every execution: 0.28 instead of 0.12 ms of the database's CPU per query (issue 19).
PLAN_OPTIONS = "-c plan_cache_mode=force_generic_plan"
_CONNECT_KWARGS = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row, "options": PLAN_OPTIONS}


def conninfo(url: str) -> str:
    """A libpq URL for psycopg from a SQLAlchemy one (``postgresql+psycopg://`` → ``postgresql://``)."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


def to_pyformat(sql: str) -> str:
    """A SQLAlchemy ``text()`` statement with ``:name`` parameters in psycopg's ``%(name)s`` style
    (``::type`` casts are left alone)."""
    if "%" in sql:
        raise ValueError("statement holds a '%'; escape it before converting")
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)


class Reader:
    """Where the hot reads get their connections: a pool opened by the app's lifespan, or (when the
    app runs without one, as ``TestClient(app)`` outside a ``with`` block does) one connection per
    use, opened and closed in the same event loop.

    Parameters
    ----------
    url : str
        The database URL (SQLAlchemy or libpq form).
    cache_key : str
        The engine URL the synchronous store caches tokens and regions under (``str(engine.url)``),
        so both paths share one cache.
    """

    def __init__(self, url: str, cache_key: str):
        self.conninfo = conninfo(url)
        self.cache_key = cache_key
        self.pool: AsyncConnectionPool | None = None

    async def open(self, min_size: int = 1, max_size: int = 8) -> None:
        """Open the pool (without waiting for the database: while it is down requests answer 503)."""
        self.pool = AsyncConnectionPool(self.conninfo, min_size=min_size, max_size=max_size, open=False,
                                        kwargs={**_CONNECT_KWARGS, "connect_timeout": int(CONNECT_TIMEOUT_S)},
                                        timeout=CONNECT_TIMEOUT_S, name="gridmap-hot")
        await self.pool.open(wait=False)

    async def close(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        if self.pool is not None:
            async with self.pool.connection() as conn:
                yield conn
            return
        conn = await psycopg.AsyncConnection.connect(self.conninfo, connect_timeout=int(CONNECT_TIMEOUT_S),
                                                     autocommit=True, prepare_threshold=0, row_factory=dict_row,  # type: ignore[arg-type]  # psycopg stubs: dict_row
                                                     options=PLAN_OPTIONS)
        async with conn:
            yield conn

    async def read(self, query: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """Run a read-only ``query(conn)``; once more on a fresh connection if the first one had died.

        Why retry: the pool does not ping before each use (that would double the round trips), so
        after PostgreSQL restarts or kills sessions the idle connections are dead. A read is safe to
        repeat; :meth:`AsyncConnectionPool.check` drops every dead idle connection first.
        """
        try:
            async with self.connection() as conn:
                return await query(conn)
        except PoolTimeout:
            raise  # no connection to be had (the database is down): waiting again would only double the wait
        except psycopg.OperationalError:
            if self.pool is None:
                raise
            await self.pool.check()
        async with self.connection() as conn:
            return await query(conn)


async def ping(reader: Reader) -> bool:
    """True when the database answers ``SELECT 1``."""
    async def select_one(conn):
        await conn.execute("SELECT 1")
        return True

    try:
        return await reader.read(select_one)
    except psycopg.Error:
        return False


# -- tokens and regions (the TTL cache of geodata.store.auth) ----------------------------------------

def _cache_get(key: tuple) -> Any:
    return auth._cached(key, lambda: None)  # a compute giving None is never stored: a pure look-up


def _cache_put(key: tuple, value: Any) -> None:
    auth._cached(key, lambda: value)


def cached_token(cache_key: str, token: str) -> auth.TokenRecord | None:
    """The token's record if the cache holds it (no database), else None."""
    return _cache_get(("token", cache_key, auth.hash_token(token)))


_EXPAND_SQL = to_pyformat(auth._EXPAND.text)


async def expand_regions(reader: Reader, codes: list[str] | tuple[str, ...]) -> auth.RegionScope:
    """:func:`geodata.store.auth.expand_regions` in the event loop (same cache, same result)."""
    codes = [c for c in codes if c]
    if auth.ALL_REGIONS in codes:
        return auth.RegionScope(True, frozenset(), frozenset(), frozenset())
    base = frozenset(codes)
    if not codes:
        return auth.RegionScope(False, base, base, base)
    key = ("regions", reader.cache_key, base)
    hit = _cache_get(key)
    if hit is not None:
        return hit

    async def expand(conn):
        return await (await conn.execute(_EXPAND_SQL, {"codes": list(base)})).fetchall()

    comm, grids = set(base), set(base)
    for row in await reader.read(expand):
        (comm if row["kind"] == "c" else grids).add(row["code"])
    scope = auth.RegionScope(False, base, frozenset(comm), frozenset(grids))
    _cache_put(key, scope)
    return scope


async def record_audit(reader: Reader, *, token_id: int | None, role: str | None, member_id: str | None,
                       action: str, what: str, ids, detail: dict | None = None) -> int:
    """:func:`geodata.store.auth.record_audit` in the event loop (ids only, never personal data).
    A write: not repeated on a dead connection (the request answers 503 instead)."""
    ids = [str(i) for i in ids]
    async with reader.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO audit_log (token_id, role, member_id, action, what, ids, n_ids, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING audit_id",
            (token_id, role, member_id, action, what, ids, len(ids), None if detail is None else Jsonb(detail)))
        row = await cur.fetchone()
        assert row is not None  # INSERT … RETURNING always gives one row
        return row["audit_id"]  # type: ignore[call-overload]  # dict_row factory set on the connection


# -- nearest responders (就近派单) -------------------------------------------------------------------

_KNN = {f: to_pyformat(_knn_sql(*f)) for f in _FLAGS}
_NEAREST = {f: to_pyformat(_nearest_sql(*f)) for f in _FLAGS}
_POOL_STREET = to_pyformat(POOL_STREET_SQL)
#: A pool without one street, cached as such (the cache never stores None).
_NO_STREET = ""


async def pool_street(reader: Reader, pool: list[str] | None) -> str | None:
    """:func:`geodata.store.nearest.pool_street` in the event loop, cached per pool as the region
    expansions are (``geodata.store.auth``: cleared on grid imports and commits, which may move a grid)."""
    if not pool:
        return None
    key = ("pool_street", reader.cache_key, frozenset(pool))
    hit = _cache_get(key)
    if hit is None:
        async def select(conn):
            return [r["street_code"] for r in await (await conn.execute(_POOL_STREET, {"pool": list(pool)})).fetchall()]

        hit = one_street(await reader.read(select)) or _NO_STREET
        _cache_put(key, hit)
    return hit or None


def _json_sql(flags, fields: tuple[str, ...]) -> str:
    """:func:`_knn_sql` answering with the JSON array itself: the first ``k`` rows by (distance, id) as
    objects of ``fields`` in that order, and whether more rows tie at the k-th place than were fetched
    (then :data:`_NEAREST` ranks them). PostgreSQL writes float8 in its shortest exact form, as
    Python's ``repr`` does, so the numbers are the ones the store returns."""
    pairs = ", ".join(f"'{f}', {f}" for f in fields)
    order = 'distance_m, member_id COLLATE "C"'
    return (f"WITH knn AS MATERIALIZED ({_KNN[flags]}), "
            f"top AS (SELECT * FROM knn ORDER BY {order} LIMIT %(k)s) "
            "SELECT (SELECT count(*) FROM knn) = %(kk)s "
            "AND (SELECT max(distance_m) FROM knn) <= (SELECT max(distance_m) FROM top) AS overflow, "
            f"(SELECT coalesce(json_agg(json_build_object({pairs}) ORDER BY {order}), '[]') FROM top)::text AS body")


@lru_cache(maxsize=256)
def _json_statement(flags, fields: tuple[str, ...]) -> str:
    return _json_sql(flags, fields)


async def nearest_responders_json(reader: Reader, lon: float, lat: float, fields: tuple[str, ...], k: int = 5,
                                  skill: str | None = None, radius_m: float | None = None,
                                  pool: list[str] | None = None) -> bytes:
    """:func:`geodata.store.nearest.nearest_responders` (available responders) in the event loop, as the
    UTF-8 JSON array of objects with ``fields``, written by PostgreSQL: the route sends it as it comes
    (no rows to decode, sort and encode in the server's one thread); a pool in one street reads only
    that street's partition. The same responders, order and numbers (tests compare).
    WGS84 degrees; ``distance_m`` metres on the sphere."""
    street = await pool_street(reader, pool)
    flags, params = knn_params(lon, lat, k, skill, radius_m, pool, True, street)
    sql = _json_statement(flags, fields)

    async def knn(conn):
        row = await (await conn.execute(sql, params)).fetchone()
        if not row["overflow"]:
            return row["body"].encode()
        # More ties at the k-th place than fetched: rank them all exactly (second statement).
        rows = await (await conn.execute(_NEAREST[flags], params)).fetchall()
        return orjson.dumps([{f: r[f] for f in fields} for r in rows])

    return await reader.read(knn)


# -- a member's linked households (包片联户) ----------------------------------------------------------



async def member_households(reader: Reader, member_id: str) -> list[dict]:
    """:func:`geodata.store.links.member_households` in the event loop: the member's households of the
    current run in visiting order, with residents' personal data (mask or audit before showing)."""
    async def select(conn):
        return await (await conn.execute(_MEMBER_HOUSEHOLDS_SQL, {"m": member_id})).fetchall()

    return await reader.read(select)
