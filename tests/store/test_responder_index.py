"""The unpartitioned responder index (migration 0020) never differs from ``members``, and the n-D index of
sphere points ranks exactly as the great-circle distance does.

Areas of ``dispatch_cases.load_areas`` (street S1 = G1–G3, G4 in no street). Coordinates WGS84 degrees;
distances metres on the sphere.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import sqlalchemy as sa
from shapely.geometry import Point

from dispatch_cases import LAT0, LON0, M_PER_DEG_LAT, M_PER_DEG_LON, insert_members, load_areas
from geodata.store import partitions
from reference import brute_force_nearest

pytestmark = pytest.mark.db

COLUMNS = "member_id, street_code, grid_code, kind, skills, available, ST_AsText(geom)"


def _same(conn) -> tuple[int, int]:
    """(rows of members, rows of responder_index) after asserting both hold exactly the same rows."""
    def rows(table: str) -> set[tuple]:
        return {tuple(r[:4]) + (tuple(r[4] or ()),) + tuple(r[5:])
                for r in conn.execute(sa.text(f"SELECT {COLUMNS} FROM {table}")).all()}

    members, index = rows("members"), rows("responder_index")
    assert members == index, (members ^ index)
    return len(members), len(index)


def _at(x_m: float, y_m: float) -> tuple[float, float]:
    return LON0 + x_m / M_PER_DEG_LON, LAT0 + y_m / M_PER_DEG_LAT


@pytest.fixture()
def areas(engine):
    load_areas(engine)
    with engine.begin() as c:
        partitions.ensure_street_partitions(c, ["S1"], ("members",))
    return engine


def test_every_kind_of_write_keeps_the_index_equal_to_members(areas):
    eng = areas
    pts = [_at(100 + 30 * i, 200) for i in range(6)]
    insert_members(eng, [f"m{i}" for i in range(6)], [p[0] for p in pts], [p[1] for p in pts],
                   [["法律"]] * 6, [True] * 6, grid_codes=["G1", "G2", "G3", "G4", None, "G1"])
    with eng.connect() as c:
        assert _same(c) == (6, 6)
        # the street was filled in by the street trigger after the insert: the index has it too
        assert c.execute(sa.text("SELECT street_code FROM responder_index WHERE member_id = 'm0'")).scalar() == "S1"
    steps = [
        "UPDATE members SET available = false WHERE member_id = 'm1'",                 # 在岗/离岗
        "UPDATE members SET skills = ARRAY['医疗'] WHERE member_id = 'm2'",
        "UPDATE members SET grid_code = 'G3' WHERE member_id = 'm4'",                   # no street → S1 (moves partition)
        "UPDATE members SET geom = ST_SetSRID(ST_MakePoint(120.3, 30.3), 4326) WHERE member_id = 'm5'",
        "UPDATE members SET member_id = 'm5b' WHERE member_id = 'm5'",                  # an id changes
        "DELETE FROM members WHERE member_id = 'm3'",
    ]
    for sql in steps:
        with eng.begin() as c:
            c.exec_driver_sql(sql)
        with eng.connect() as c:
            _same(c)
    with eng.connect() as c:
        assert c.execute(sa.text("SELECT street_code FROM responder_index WHERE member_id = 'm4'")).scalar() == "S1"
        assert _same(c) == (5, 5)
    # a write rolled back leaves both as they were
    with eng.connect() as c:
        with c.begin() as tx:
            c.exec_driver_sql("DELETE FROM members")
            assert c.execute(sa.text("SELECT count(*) FROM responder_index")).scalar() == 0  # the writer sees it at once
            tx.rollback()
        assert _same(c) == (5, 5)
    with eng.begin() as c:
        c.exec_driver_sql("TRUNCATE members CASCADE")
    with eng.connect() as c:
        assert _same(c) == (0, 0)


def test_an_import_replacing_the_roster_keeps_the_index_equal(areas):
    from geodata.store.importer import import_layer

    def roster(n: int, offset: int) -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame({"member_id": [f"P{i:03d}" for i in range(offset, offset + n)],
                                 "grid_code": ["G1", "G2", "G3", "G4"] * (n // 4),
                                 "skills": [["法律"]] * n, "available": [True] * n},
                                geometry=[Point(*_at((0, 400, 800, 2000)[i % 4] + 50 + 5 * (i // 4), 100)) for i in range(n)],
                                crs="EPSG:4326")

    import_layer(areas, "members", roster(40, 0))
    with areas.connect() as c:
        assert _same(c) == (40, 40)
    import_layer(areas, "members", roster(20, 30), replace=True)
    with areas.connect() as c:
        assert _same(c) == (20, 20)


def test_dense_ties_rank_exactly_on_both_paths(areas):
    """600 responders in 150 m, a third of them sharing building points: the n-D index returns rows
    nearest first (its box keys are single precision; PostGIS rechecks) and both the city-wide index
    and one street's partition give the brute-force haversine ranking, ties by id."""
    from geodata.store.nearest import nearest_responders

    rng = np.random.default_rng(21)
    base = [_at(*rng.uniform(0, 150, 2)) for _ in range(400)]
    pts = base + [base[i] for i in rng.integers(0, 400, 200)]
    ids = [f"D{i:04d}" for i in rng.permutation(len(pts))]
    lon, lat = [p[0] for p in pts], [p[1] for p in pts]
    skills = [["法律"] if i % 2 else ["医疗"] for i in range(len(pts))]
    avail = [i % 9 != 0 for i in range(len(pts))]
    insert_members(areas, ids, lon, lat, skills, avail, grid_codes=["G1"] * len(pts))
    with areas.connect() as c:
        c.exec_driver_sql("ANALYZE members; ANALYZE responder_index")
        for q in range(60):
            qlon, qlat = _at(*rng.uniform(-20, 170, 2))
            k = int(rng.choice([1, 5, 10, 40]))
            skill = (None, "法律")[q % 2]
            radius = (None, 60.0)[(q // 2) % 2]
            want = brute_force_nearest(qlon, qlat, ids, lon, lat, skills, avail, k=k, skill=skill, radius_m=radius)
            for pool in (None, ["G1"], ["G1", "G4"]):  # index; S1's partition; index with a pool
                got = nearest_responders(c, qlon, qlat, k=k, skill=skill, radius_m=radius, pool=pool)
                assert [g["member_id"] for g in got] == [w[0] for w in want], (q, pool)
                np.testing.assert_allclose([g["distance_m"] for g in got], [w[1] for w in want], rtol=0, atol=1e-6)


def test_the_index_walk_is_nearest_first():
    """Over the raw index scan (no re-sort in Python): distances never decrease."""
    from conftest import create_database, drop_database
    from geodata.store import migrate

    url = create_database("gridmap_ri")
    try:
        migrate.upgrade(url)
        eng = sa.create_engine(url)
        rng = np.random.default_rng(3)
        with eng.begin() as c:
            c.execute(sa.text("INSERT INTO members (member_id, kind, available, h3, geom) SELECT 'x' || i, 'member', "
                              "true, 0, ST_SetSRID(ST_MakePoint(:lon + random() * 0.02, :lat + random() * 0.02), 4326) "
                              "FROM generate_series(1, 20000) i"), {"lon": LON0, "lat": LAT0})
            c.exec_driver_sql("ANALYZE responder_index")
            for lon, lat in zip(LON0 + rng.uniform(0, 0.02, 100), LAT0 + rng.uniform(0, 0.02, 100)):
                from geodata.store.nearest import _knn_sql, knn_params

                flags, params = knn_params(float(lon), float(lat), 200, None, None, None, True)
                d = [r.distance_m for r in c.execute(sa.text(_knn_sql(*flags)), params)]
                assert len(d) == 208 and all(b >= a for a, b in zip(d, d[1:]))
        eng.dispose()
    finally:
        drop_database(url)


def test_the_migration_goes_down_and_up_again():
    from conftest import create_database, drop_database
    from geodata.store import migrate

    url = create_database("gridmap_ri")
    try:
        migrate.upgrade(url)
        eng = sa.create_engine(url)
        with eng.begin() as c:
            c.exec_driver_sql("INSERT INTO members (member_id, kind, available, h3, geom) "
                              "VALUES ('a', 'member', true, 0, ST_SetSRID(ST_MakePoint(120.1, 30.2), 4326))")
        migrate.downgrade(url, "0019_freshness_marks")
        insp = sa.inspect(eng)
        assert "responder_index" not in insp.get_table_names()
        with eng.connect() as c:
            assert c.execute(sa.text("SELECT count(*) FROM pg_proc WHERE proname LIKE 'gridmap_sphere_xyz'")).scalar() == 0
        migrate.upgrade(url)
        with eng.connect() as c:  # the index is filled from the members already there
            assert c.execute(sa.text("SELECT member_id FROM responder_index")).scalars().all() == ["a"]
        eng.dispose()
    finally:
        drop_database(url)
