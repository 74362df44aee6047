"""Nearest responders prune the street partitions of members (issues 18 and 19) without changing answers.

Areas of ``dispatch_cases.load_areas``: street S1 = grids G1, G2 (community C1) and G3 (C2, found by
location); G4's community C3 has no street, so its members lie in no street (the default partition).
Coordinates WGS84; metres.
"""

from __future__ import annotations

import asyncio
import hashlib

import orjson

import numpy as np
import pytest
import sqlalchemy as sa

from dispatch_cases import LAT0, LON0, M_PER_DEG_LAT, M_PER_DEG_LON, insert_members, load_areas
from geodata.store import partitions

pytestmark = pytest.mark.db

GRIDS = {"G1": (0, 400), "G2": (400, 800), "G3": (800, 1200), "G4": (2000, 2400)}  # x range, metres east


def _part(code: str) -> str:
    return f"members_p_{code.lower()}_{hashlib.md5(code.encode()).hexdigest()[:8]}"


@pytest.fixture()
def town(engine):
    """The four grids with 60 responders each (a few unavailable, skills mixed) and a partition for S1."""
    load_areas(engine)
    rng = np.random.default_rng(4)
    ids, lon, lat, skills, avail, grids = [], [], [], [], [], []
    for g, (x0, x1) in GRIDS.items():
        for i in range(60):
            ids.append(f"{g}-{i:02d}")
            lon.append(LON0 + rng.uniform(x0, x1) / M_PER_DEG_LON)
            lat.append(LAT0 + rng.uniform(0, 400) / M_PER_DEG_LAT)
            skills.append(["法律"] if i % 3 == 0 else ["医疗"])
            avail.append(i % 7 != 0)
            grids.append(g)
    with engine.begin() as c:
        partitions.ensure_street_partitions(c, ["S1"], ("members",))
    insert_members(engine, ids, lon, lat, skills, avail, grid_codes=grids)
    with engine.begin() as c:
        c.exec_driver_sql("ANALYZE members")
    return engine


def test_the_pool_street_is_the_members_street(town):
    from geodata.store.nearest import pool_street

    with town.connect() as c:
        assert pool_street(c, ["G1", "G2"]) == "S1"
        assert pool_street(c, ["G1"]) == "S1"
        assert pool_street(c, ["G1", "G3"]) == "S1"
        assert pool_street(c, ["G1", "G4"]) is None  # G4's members lie in no street
        assert pool_street(c, ["G4"]) is None and pool_street(c, []) is None and pool_street(c, None) is None
        assert pool_street(c, ["G1", "no-such-grid"]) == "S1"  # an unknown grid holds no members
        where = dict(c.execute(sa.text("SELECT member_id, street_code FROM members")).all())
    assert {where[f"G1-{i:02d}"] for i in range(60)} == {where[f"G3-{i:02d}"] for i in range(60)} == {"S1"}
    assert {where[f"G4-{i:02d}"] for i in range(60)} == {None}


def _unpruned(conn, lon, lat, k, skill, radius, pool):
    """The same query without the street condition: every partition read."""
    from geodata.store.nearest import _KNN_SQL, knn_params

    flags, params = knn_params(lon, lat, k + 50, skill, radius, pool, True)
    return [r.member_id for r in conn.execute(_KNN_SQL[flags], params)]


def test_pruned_answers_equal_the_unpruned_ones(town):
    from geodata.store.nearest import nearest_responders

    rng = np.random.default_rng(9)
    pools = (["G1"], ["G1", "G2"], ["G2", "G3"], ["G1", "G4"], ["G3", "G4"], ["G4"])
    with town.connect() as c:
        for _ in range(40):
            lon = LON0 + rng.uniform(-200, 2600) / M_PER_DEG_LON
            lat = LAT0 + rng.uniform(-200, 600) / M_PER_DEG_LAT
            k, pool = int(rng.integers(1, 12)), list(pools[rng.integers(len(pools))])
            skill = (None, "法律")[rng.integers(2)]
            radius = (None, 600.0)[rng.integers(2)]
            got = [r["member_id"] for r in nearest_responders(c, lon, lat, k=k, skill=skill, radius_m=radius, pool=pool)]
            want = _unpruned(c, lon, lat, k, skill, radius, pool)
            assert got == want[:len(got)] and len(got) == min(k, len(want)), (pool, k, skill, radius)
            assert {g.split("-")[0] for g in got} <= set(pool)


@pytest.mark.parametrize("mode", ["auto", "force_generic_plan"])
def test_a_one_street_pool_reads_one_partition(town, mode):
    """EXPLAIN ANALYZE: a pool in S1 reads S1's partition only, also under a prepared statement's generic
    plan (pruned at executor start, "Subplans Removed"); a pool with a grid in no street reads them all."""
    from geodata.store.nearest import _knn_sql, _nearest_sql, knn_params

    with town.connect() as c:
        c.exec_driver_sql(f"SET plan_cache_mode = {mode}")
        for sql in (_knn_sql, _nearest_sql):
            flags, params = knn_params(LON0, LAT0, 5, None, None, ["G1", "G2"], True, "S1")
            assert partitions.scanned_partitions(c, sql(*flags), params) == {_part("S1")}
            # a pool across streets (G4 lies in none) reads the unpartitioned index of every responder (0020)
            flags, params = knn_params(LON0, LAT0, 5, None, None, ["G1", "G4"], True, None)
            assert partitions.scanned_partitions(c, sql(*flags), params) == {"responder_index"}


def test_the_event_loop_reader_prunes_alike_and_caches_the_street(town, db_url):
    from geodata.store import auth
    from geodata.store import pool as hot
    from geodata.store.nearest import nearest_responders

    reader = hot.Reader(db_url, str(town.url))
    auth.clear_cache()
    assert asyncio.run(hot.pool_street(reader, ["G2", "G1"])) == "S1"
    assert asyncio.run(hot.pool_street(reader, ["G1", "G4"])) is None
    assert auth._cached(("pool_street", str(town.url), frozenset(["G1", "G4"])), lambda: None) == ""  # cached: no street
    for pool in (["G1", "G2"], ["G4"], ["G1", "G4"]):
        with town.connect() as c:
            want = nearest_responders(c, LON0 + 0.004, LAT0 + 0.001, k=7, pool=pool)
        fields = ("member_id", "kind", "grid_code", "skills", "lon", "lat", "distance_m")
        got = orjson.loads(asyncio.run(hot.nearest_responders_json(reader, LON0 + 0.004, LAT0 + 0.001, fields, k=7,
                                                                   pool=pool)))
        assert got == [{f: w[f] for f in fields} for w in want] and len(got) == 7
    auth.clear_cache()
