"""Freshness marks: one mechanism that keeps every cached figure exactly as fresh as the tables under it.

A cache (the per-grid figures and H3 counts of the map tiles, the coverage snapshots, the sums of closed
incidents) is derived from tables that change only when someone writes. Migration ``0019_freshness_marks``
installs one plpgsql function, ``freshness_mark()``, as statement-level triggers on those tables: a
statement that changed a row the cache depends on inserts a row (the table's name) into the cache's
*mark table*, inside the writer's own transaction. So a mark is visible only once its write has
committed, a rolled-back write leaves none, and the marks survive a restart (they are rows). Mark tables
are insert-only for writers: concurrent writers never wait on each other.

Readers consume the marks under the cache's advisory lock, in one of two ways:

- rebuilt in place (:func:`refresh`): the marks are deleted and the cache rebuilt in the same transaction
  (``grid_figures`` and ``h3_counts``);
- by epoch (:func:`current_epoch`): the marks are deleted and a one-row epoch advanced; what is cached is
  stamped with the epoch it was computed in and served only while that epoch is current (coverage
  snapshots, incident sums).

Either way the marks go *before* anything is computed: under READ COMMITTED each statement sees every
write committed before it started, so a write committing during a rebuild is either seen by it or leaves
a mark for the next reader — never neither. Two readers finding marks at once compute once: the second
waits on the lock and then finds none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine


@dataclass(frozen=True)
class Cache:
    """A cache kept by freshness marks.

    Attributes
    ----------
    name : str
        What it is called in logs and tests.
    marks : str
        The table its triggers write marks into (``freshness_mark(marks, …)``, one row per statement).
    epoch : str or None
        Its one-row epoch table (``id = 1``, ``n``), or None for a cache rebuilt in place.
    lock : int
        The ``pg_advisory_xact_lock`` key serialising whoever consumes its marks.
    """

    name: str
    marks: str
    epoch: str | None
    lock: int


GRID_FIGURES = Cache("grid_figures", "grid_figures_dirty", None, 0x67726964_66696773)  # "gridfigs"
COVERAGE = Cache("coverage", "coverage_dirty", "coverage_epoch", 0x636F7665_72616765)  # "coverage"
INCIDENT_STATS = Cache("incident_stats", "incident_stats_dirty", "incident_stats_epoch", 0x696E637374617473)  # "incstats"

#: Every cache by name.
CACHES = {c.name: c for c in (GRID_FIGURES, COVERAGE, INCIDENT_STATS)}


@dataclass(frozen=True)
class Epoch:
    """A cache's epoch: its number ``n`` and a ``stamp`` (``n:xmin``, the transaction that last wrote the
    epoch row), which differs also when the epoch table was emptied and its number starts again."""

    n: int
    stamp: str


def stale_sql(cache: Cache) -> str:
    """An SQL boolean expression: whether a committed write has marked ``cache`` since it was consumed."""
    return f"EXISTS (SELECT 1 FROM {cache.marks})"


def is_stale(conn: Connection, cache: Cache) -> bool:
    """Whether a committed write (visible to ``conn``) has marked ``cache`` since its marks were consumed."""
    return bool(conn.execute(text(f"SELECT {stale_sql(cache)}")).scalar())


def take_marks(conn: Connection, cache: Cache) -> set[str]:
    """Take the advisory lock of ``cache`` and delete its marks in ``conn``'s transaction; returns the names
    of the tables that were written (empty when another reader consumed them first)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": cache.lock})
    return set(conn.execute(text(f"DELETE FROM {cache.marks} RETURNING table_name")).scalars())


def refresh(engine: Engine, cache: Cache, rebuild: Callable[[Connection, set[str]], None]) -> bool:
    """Consume the marks of ``cache`` and ``rebuild(conn, tables_written)`` it in the same transaction.

    Returns whether it rebuilt: False when no mark was left (nothing was written, or another reader
    rebuilt while this one waited for the lock). A rebuild that fails leaves the marks in place."""
    with engine.begin() as conn:
        marks = take_marks(conn, cache)
        if not marks:
            return False
        rebuild(conn, marks)
    return True


def epoch_sql(cache: Cache) -> str:
    """An SQL expression: the current epoch number of ``cache`` (0 while its epoch table is empty)."""
    return f"COALESCE((SELECT n FROM {cache.epoch} WHERE id = 1), 0)"


def current_epoch(engine: Engine, cache: Cache, on_advance: Callable[[Connection, int], None] | None = None) -> Epoch:
    """The epoch what is cached of ``cache`` is valid in, after consuming the marks of every committed write.

    When marks are found (or the epoch table is empty), they are deleted and the epoch advanced under the
    cache's lock, and ``on_advance(conn, n)`` runs in that transaction (to drop what is cached of earlier
    epochs). Readers that find no mark take no lock."""
    if cache.epoch is None:
        raise ValueError(f"cache {cache.name!r} is rebuilt in place and has no epoch")
    with engine.begin() as conn:
        row = conn.execute(text(f"SELECT {_EPOCH_ROW.format(t=cache.epoch)}, {stale_sql(cache)}")).one()
        if row[0] is not None and not row[1]:
            return _parse(row[0])
        marks = take_marks(conn, cache)
        if not marks:  # another reader advanced it while this one waited for the lock (or nothing marked)
            now = conn.execute(text(f"SELECT {_EPOCH_ROW.format(t=cache.epoch)}")).scalar()
            if now is not None:
                return _parse(now)
        epoch = _parse(conn.execute(text(
            f"INSERT INTO {cache.epoch} (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE "
            f"SET n = {cache.epoch}.n + 1 RETURNING n || ':' || xmin::text")).scalar_one())
        if on_advance is not None:
            on_advance(conn, epoch.n)
        return epoch


_EPOCH_ROW = "(SELECT n || ':' || xmin::text FROM {t} WHERE id = 1)"


def _parse(stamp: str) -> Epoch:
    return Epoch(int(stamp.split(":", 1)[0]), stamp)
