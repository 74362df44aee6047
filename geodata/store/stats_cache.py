"""Sums of closed incidents kept in memory, exactly as fresh as the ``incidents`` table.

A closed incident (status closed or rated, with a ``closed_at``) has figures that no longer change with the
clock: its light is taken at its closing time, it is due on both clocks, its response time is fixed. So a
region's sums over its closed incidents (about 85 % of a city's) are computed once and kept; only the open
ones are summed on each request (:func:`geodata.store.stats.incident_counts`).

Freshness rests on an *epoch* that only readers advance (:func:`geodata.store.epochs.current_epoch`), as
:mod:`geodata.store.coverage_snapshots` does: statement-level triggers on ``incidents`` (and on ``members``' id,
name and grid, for the holders' names kept beside the sums) mark the cache
:data:`geodata.store.epochs.INCIDENT_STATS` (a row in ``incident_stats_dirty``) inside the writer's own
transaction (migrations 0018, 0019).

1. :func:`current_epoch` looks for dirty marks. A mark is visible only once its write has committed; the
   reader then deletes the marks and advances the epoch in one transaction under an advisory lock.
2. Cached sums are served only while their epoch is the current one.
3. Sums are computed after the epoch was read, so they see every write whose mark advanced the epoch to that
   value. A write that commits while they are computed leaves a mark; the next reader advances the epoch and
   the sums are not served again — a committed write is never missed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from geodata.store import epochs

#: At most this many (database, region, window, category) entries are kept; the oldest goes first.
MAX_ENTRIES = 64

_lock = threading.Lock()
_entries: dict[tuple, tuple[str, Any]] = {}


def current_epoch(engine: Engine) -> str:
    """The epoch cached sums are valid in, after consuming the marks of every committed write (see above).

    The epoch row's ``xmin`` (the transaction that wrote it) is part of it: a table emptied and filled again
    (the tests' TRUNCATE, a migration run again) starts a new epoch even where its number repeats."""
    return epochs.current_epoch(engine, epochs.INCIDENT_STATS).stamp


def cached(engine: Engine, key: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()`` for ``key`` in this database, or the value kept from an earlier call in the current epoch."""
    epoch = current_epoch(engine)
    full_key = (engine.url.render_as_string(hide_password=True), *key)
    with _lock:
        hit = _entries.get(full_key)
    if hit is not None and hit[0] == epoch:
        return hit[1]
    value = compute()
    with _lock:
        _entries.pop(full_key, None)
        _entries[full_key] = (epoch, value)
        while len(_entries) > MAX_ENTRIES:
            _entries.pop(next(iter(_entries)))
    return value


def clear() -> None:
    """Forget every kept sum (tests)."""
    with _lock:
        _entries.clear()
