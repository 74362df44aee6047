"""The freshness marks shared by every cache (:mod:`geodata.store.epochs`, migration 0019) on the real PostGIS.

For each cache — the tile figures (rebuilt in place), the coverage snapshots and the incident sums (by
epoch) — a committed write marks it and one reader consumes the mark; a write still open or rolled back
does not count; two readers at once rebuild once; a write committing during a rebuild leaves the cache
stale; the marks survive a restart of the service and a crash of the database server. Every test sees a
mark appear *and* go, so a mark pinned either way fails it.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from geodata.store import epochs
from tests.web.conftest import seed_region

CACHES = [epochs.GRID_FIGURES, epochs.COVERAGE, epochs.INCIDENT_STATS]

#: A write every cache watches: a new member (the figures count members, coverage links them, the
#: incident sums keep members' names).
NEW_MEMBER = ("INSERT INTO members (member_id, grid_code, name, h3, geom) VALUES "
              "(:m, 'G2', '赵六', 0, ST_SetSRID(ST_MakePoint(121.495, 31.205), 4326))")


def consume(engine, cache, during=None) -> list:
    """Consume the marks of ``cache`` as its reader does; returns the rebuilds (or epoch advances) made —
    empty when it was fresh. ``during(conn)`` runs inside the rebuild, after the marks were taken."""
    done: list = []

    def rebuild(conn, what):
        done.append(what)
        if during is not None:
            during(conn)

    if cache.epoch is None:
        epochs.refresh(engine, cache, rebuild)
    else:
        epochs.current_epoch(engine, cache, rebuild)
    return done


def write(engine, member="M9") -> None:
    with engine.begin() as c:
        c.execute(sa.text(NEW_MEMBER), {"m": member})


@pytest.fixture()
def seeded(engine):
    """The seeded region with every cache's marks consumed."""
    seed_region(engine)
    for cache in CACHES:
        consume(engine, cache)
    return engine


@pytest.mark.parametrize("cache", CACHES, ids=lambda c: c.name)
def test_a_committed_write_marks_once_and_one_read_consumes_it(seeded, cache):
    assert consume(seeded, cache) == []
    with seeded.connect() as c:
        assert not epochs.is_stale(c, cache)
    write(seeded)
    with seeded.connect() as c:
        assert epochs.is_stale(c, cache)
    assert len(consume(seeded, cache)) == 1
    assert consume(seeded, cache) == []


@pytest.mark.parametrize("cache", CACHES, ids=lambda c: c.name)
def test_an_uncommitted_write_does_not_count_until_it_commits(seeded, cache):
    with seeded.connect() as writer:
        writer.execute(sa.text(NEW_MEMBER), {"m": "M9"})
        assert consume(seeded, cache) == []  # the mark sits in the writer's open transaction
        writer.commit()
    assert len(consume(seeded, cache)) == 1


@pytest.mark.parametrize("cache", CACHES, ids=lambda c: c.name)
def test_a_rolled_back_write_does_not_count(seeded, cache):
    with seeded.connect() as writer:
        writer.execute(sa.text(NEW_MEMBER), {"m": "M9"})
        writer.rollback()
    assert consume(seeded, cache) == []
    write(seeded, "M8")  # and the same write committed does
    assert len(consume(seeded, cache)) == 1


def _lock_waiters(engine) -> int:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).scalar()


@pytest.mark.parametrize("cache", CACHES, ids=lambda c: c.name)
def test_two_readers_at_once_rebuild_once(seeded, cache):
    """The first reader holds the lock until the second waits on it; the second then finds no mark."""
    write(seeded)
    done: list = []
    second = threading.Thread(target=lambda: done.extend(consume(seeded, cache)))

    def hold(conn):
        second.start()
        for _ in range(600):  # until the second reader waits on the lock (a hang is a failure, not a pass)
            if _lock_waiters(seeded):
                return
            time.sleep(0.05)
        pytest.fail("the second reader never waited on the lock")

    done.extend(consume(seeded, cache, during=hold))
    second.join()
    assert len(done) == 1
    assert consume(seeded, cache) == []


@pytest.mark.parametrize("cache", CACHES, ids=lambda c: c.name)
def test_a_write_committed_during_a_rebuild_leaves_the_cache_stale(seeded, cache):
    write(seeded, "M8")
    assert len(consume(seeded, cache, during=lambda conn: write(seeded))) == 1
    with seeded.connect() as c:
        assert epochs.is_stale(c, cache)  # the rebuild may have missed it: the next reader rebuilds
    assert len(consume(seeded, cache)) == 1
    assert consume(seeded, cache) == []


@pytest.mark.parametrize("cache", [c for c in CACHES if c.epoch], ids=lambda c: c.name)
def test_an_epoch_moves_only_past_committed_writes(seeded, cache):
    first = epochs.current_epoch(seeded, cache)
    assert epochs.current_epoch(seeded, cache) == first  # a read marks nothing
    write(seeded)
    second = epochs.current_epoch(seeded, cache)
    assert second.n == first.n + 1 and second.stamp != first.stamp
    assert epochs.current_epoch(seeded, cache) == second


@pytest.mark.parametrize("cache", CACHES, ids=lambda c: c.name)
def test_a_restart_of_the_service_keeps_the_marks(seeded, db_url, cache):
    from geodata.store.session import make_engine

    write(seeded)
    make_engine.cache_clear()
    seeded.dispose()
    after = make_engine(db_url)  # a new process' pool: nothing of the old one is kept
    assert len(consume(after, cache)) == 1
    make_engine.cache_clear()
    after.dispose()
    assert consume(make_engine(db_url), cache) == []


@pytest.mark.slow
def test_a_crash_of_the_database_server_keeps_committed_marks_only():
    """On a throwaway server stopped the hard way (no checkpoint): a committed write's marks are there after
    recovery, a write still open at the crash left none."""
    from throwaway_pg import ThrowawayPostgres

    from geodata.store import migrate

    server = ThrowawayPostgres()
    server.start()
    try:
        url = server.create_database("epochs_crash")
        migrate.upgrade(url)
        eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
        seed_region(eng)
        for cache in CACHES:
            consume(eng, cache)
        write(eng, "M8")
        open_tx = eng.connect()
        open_tx.execute(sa.text("INSERT INTO incidents (incident_id, category, reported_at, h3, geom) VALUES "
                                "('I-OPEN', '环境卫生', now(), 0, ST_SetSRID(ST_MakePoint(121.49, 31.2), 4326))"))
        server.stop("immediate")
        open_tx.invalidate()
        server.start()
        with eng.connect() as c:  # the incident insert was open at the crash: its mark went with it
            assert c.execute(sa.text("SELECT table_name FROM incident_stats_dirty")).scalars().all() == ["members"]
        for cache in CACHES:  # the members insert committed: every cache is stale, once
            assert len(consume(eng, cache)) == 1, cache.name
            assert consume(eng, cache) == [], cache.name
        eng.dispose()
    finally:
        server.remove()
