"""Street partitions of households, members, links and incidents (migration 0014, issue 18).

Two streets (S1 west, S2 east), one community and one grid each, on the real PostGIS.
"""

from __future__ import annotations

import geopandas as gpd
import pytest
import sqlalchemy as sa
from shapely.geometry import MultiPolygon, Point, box

from geodata.store import partitions
from geodata.store.importer import import_layer, table_counts

S1_BOX, S2_BOX = box(120.10, 30.25, 120.11, 30.26), box(120.11, 30.25, 120.12, 30.26)


def _layers():
    areas = {"S1": S1_BOX, "S2": S2_BOX}
    streets = gpd.GeoDataFrame({"code": list(areas)}, geometry=[MultiPolygon([b]) for b in areas.values()], crs=4326)
    comms = gpd.GeoDataFrame({"code": ["C1", "C2"], "street_code": ["S1", "S2"]},
                             geometry=[MultiPolygon([b]) for b in areas.values()], crs=4326)
    grids = gpd.GeoDataFrame({"grid_code": ["G1", "G2"], "community_code": ["C1", "C2"], "kind": ["urban", "urban"]},
                             geometry=[MultiPolygon([b]) for b in areas.values()], crs=4326)
    return streets, comms, grids


def _households(ids, grid, x):
    return gpd.GeoDataFrame({"household_id": ids, "grid_code": [grid] * len(ids)},
                            geometry=[Point(x, 30.255 + i * 1e-4) for i in range(len(ids))], crs=4326)


@pytest.fixture()
def two_streets(engine):
    for layer, gdf in zip(("streets", "communities", "grids"), _layers()):
        import_layer(engine, layer, gdf)
    import_layer(engine, "households", _households(["H1", "H2"], "G1", 120.105))
    import_layer(engine, "households", _households(["H3"], "G2", 120.115))
    return engine


def _where(engine, table="households", idcol="household_id"):
    with engine.connect() as c:
        return {r[0]: (r[1], r[2]) for r in c.execute(sa.text(
            f"SELECT {idcol}, tableoid::regclass::text, street_code FROM {table}"))}


def test_import_writes_each_household_into_its_street_partition(two_streets):
    rows = _where(two_streets)
    assert rows["H1"][1] == rows["H2"][1] == "S1" and rows["H3"][1] == "S2"
    assert rows["H1"][0] != rows["H3"][0] and not rows["H1"][0].endswith("_default")
    with two_streets.connect() as c:
        lookup = dict(c.execute(sa.text("SELECT household_id, street_code FROM household_street")).all())
    assert lookup == {"H1": "S1", "H2": "S1", "H3": "S2"}


def test_household_moving_street_is_moved_and_counted_updated(two_streets):
    moved = import_layer(two_streets, "households", _households(["H1"], "G2", 120.115))
    assert (moved.inserted, moved.updated) == (0, 1)
    assert _where(two_streets)["H1"][1] == "S2"
    with two_streets.connect() as c:
        assert c.execute(sa.text("SELECT street_code FROM household_street WHERE household_id = 'H1'")).scalar() == "S2"
    again = import_layer(two_streets, "households", _households(["H1"], "G2", 120.115))
    assert (again.inserted, again.updated) == (0, 0)


def test_an_id_stays_unique_across_streets(two_streets):
    before = table_counts(two_streets)
    with pytest.raises(sa.exc.IntegrityError):
        with two_streets.begin() as c:  # H1 lives in S1; the same id written into S2 directly
            c.execute(sa.text("INSERT INTO households (household_id, grid_code, street_code, h3, geom) "
                              "VALUES ('H1', 'G2', 'S2', 1, ST_SetSRID(ST_MakePoint(120.115, 30.255), 4326))"))
    assert table_counts(two_streets) == before


def test_a_writer_that_leaves_out_the_street_gets_it_from_the_grid(two_streets):
    with two_streets.begin() as c:
        c.execute(sa.text("INSERT INTO households (household_id, grid_code, h3, geom) "
                          "VALUES ('H9', 'G2', 1, ST_SetSRID(ST_MakePoint(120.115, 30.255), 4326))"))
    assert _where(two_streets)["H9"][1] == "S2"


def test_links_take_their_household_street(two_streets):
    with two_streets.begin() as c:
        run = c.execute(sa.text("INSERT INTO link_runs (region, is_current) VALUES ('S2', true) RETURNING run_id")).scalar()
        c.execute(sa.text("INSERT INTO links (run_id, household_id, member_id) VALUES (:r, 'H3', 'M1')"), {"r": run})
        assert c.execute(sa.text("SELECT street_code FROM links")).scalar() == "S2"


def test_a_grid_moving_to_another_community_takes_its_households_along(two_streets):
    _, _, grids = _layers()
    grids.loc[0, "community_code"] = "C2"
    import_layer(two_streets, "grids", grids)
    assert {k: v[1] for k, v in _where(two_streets).items()} == {"H1": "S2", "H2": "S2", "H3": "S2"}


def test_region_read_prunes_to_its_street(two_streets):
    from geodata.store.maps import load_region

    with two_streets.connect() as c:
        sql = ("SELECT household_id FROM households WHERE grid_code = ANY(:codes) "
               "AND (street_code = ANY(:streets) OR street_code IS NULL)")
        read = partitions.scanned_partitions(c, sql, {"codes": ["G1"], "streets": partitions.region_streets(c, ["G1"])})
        streets = partitions.existing_streets(c, "households")
    assert {"S1", "S2"} <= streets
    assert read == {"households_p_s1_" + _hash("S1"), "households_p_default"}
    assert sorted(load_region(two_streets, "C1", layers=("households",))["households"]["household_id"]) == ["H1", "H2"]


def test_list_incidents_of_a_street_reads_its_partition(two_streets):
    from geodata.store import incidents

    incidents.create_incident(two_streets, lon=120.105, lat=30.255, category="环境卫生")
    incidents.create_incident(two_streets, lon=120.115, lat=30.255, category="环境卫生")
    assert [i["street_code"] for i in incidents.list_incidents(two_streets, "S1")] == ["S1"]
    with two_streets.connect() as c:
        read = partitions.scanned_partitions(
            c, "SELECT incident_id FROM incidents WHERE street_code = ANY(:s) OR street_code IS NULL", {"s": ["S1"]})
    assert read == {"incidents_p_s1_" + _hash("S1"), "incidents_p_default"}


def _hash(code: str) -> str:
    import hashlib

    return hashlib.md5(code.encode()).hexdigest()[:8]


def test_upgrade_downgrade_upgrade_keeps_the_rows(two_streets, db_url):
    from geodata.store import migrate
    from geodata.store.session import make_engine

    before = {t: _where(two_streets, t, i) for t, i in (("households", "household_id"),)}
    counts = table_counts(two_streets)
    make_engine.cache_clear()
    two_streets.dispose()
    try:
        migrate.downgrade(db_url, "0012_deadlines")
        eng = make_engine(db_url)
        assert table_counts(eng) == counts
        with eng.connect() as c:
            assert c.execute(sa.text("SELECT relkind FROM pg_class WHERE relname = 'households'")).scalar() == "r"
        eng.dispose()
    finally:
        make_engine.cache_clear()
        migrate.upgrade(db_url)
    eng = make_engine(db_url)
    assert table_counts(eng) == counts
    assert {k: v[1] for k, v in _where(eng).items()} == {k: v[1] for k, v in before["households"].items()}
    assert not any(v[0].endswith("_default") for v in _where(eng).values())
