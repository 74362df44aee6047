"""The PostGIS store against a real server: migrations up and down, round trip, idempotent upsert,
H3 cells per grid, and an import that fails half-way leaving every table as it was.
"""

import geopandas as gpd
import numpy as np
import pytest
import sqlalchemy as sa
from shapely.geometry import MultiPolygon, box

from geodata.store import migrate
from geodata.store.importer import import_layer, table_counts
from gridmap.cells import points_to_cells


@pytest.mark.db
def test_migrations_up_and_down():
    from conftest import create_database, drop_database

    url = create_database("gridmap_mig")
    try:
        migrate.upgrade(url)
        eng = sa.create_engine(url)
        insp = sa.inspect(eng)
        tables = set(insp.get_table_names())
        assert {"streets", "communities", "grids", "grid_cells", "households", "members", "service_centres",
                "link_runs", "links", "incidents"} <= tables
        gist = {i["name"] for i in insp.get_indexes("households")}
        assert "ix_households_geom" in gist
        with eng.connect() as c:
            t = c.execute(sa.text("SELECT type, srid FROM geometry_columns WHERE f_table_name='grids'")).one()
            assert tuple(t) == ("MULTIPOLYGON", 4326)
            indexdef = c.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE indexname='ix_grids_geom'")).scalar_one()
            assert indexdef.count("gist") == 1
        migrate.downgrade(url, "base")
        left = set(sa.inspect(eng).get_table_names()) - {"spatial_ref_sys", "alembic_version"}
        assert left == set()
        migrate.upgrade(url)  # and up again from base
        assert migrate.current(url) is not None
        eng.dispose()
    finally:
        drop_database(url)


@pytest.fixture()
def with_grids(engine, hangzhou_grids):
    """The Hangzhou grids in the store: households and members must name an existing grid (migration 0004)."""
    import_layer(engine, "grids", hangzhou_grids)


@pytest.mark.db
def test_round_trip_households(engine, hangzhou_scenario, with_grids):
    hh = hangzhou_scenario["households"].iloc[:500].copy()
    r = import_layer(engine, "households", hh)
    assert (r.rows, r.inserted, r.updated) == (500, 500, 0)
    back = gpd.read_postgis("SELECT * FROM households ORDER BY household_id", engine, geom_col="geom")
    hh = hh.sort_values("household_id").reset_index(drop=True)
    assert list(back["household_id"]) == list(hh["household_id"])
    assert list(back["id_number"]) == list(hh["id_number"])
    assert list(back["phone"]) == list(hh["phone"])
    assert back.crs.to_epsg() == 4326
    assert np.allclose(back.geometry.x, hh.geometry.x, atol=1e-12) and np.allclose(back.geometry.y, hh.geometry.y, atol=1e-12)
    want_h3 = points_to_cells(hh.geometry.x, hh.geometry.y).astype(np.int64)
    assert list(back["h3"]) == list(want_h3)
    tagged = hh["tags"].notna().to_numpy()
    assert [",".join(t) for t in back.loc[tagged, "tags"]] == list(hh.loc[tagged, "tags"])


@pytest.mark.db
def test_reimport_is_idempotent_and_upserts(engine, hangzhou_scenario, with_grids):
    m = hangzhou_scenario["members"].iloc[:200].copy()
    import_layer(engine, "members", m)
    r = import_layer(engine, "members", m)
    assert (r.inserted, r.updated) == (0, 0)
    m2 = m.copy()
    m2.loc[m2.index[:5], "available"] = ~m2.loc[m2.index[:5], "available"].astype(bool)
    r = import_layer(engine, "members", m2)
    assert (r.inserted, r.updated) == (0, 5)
    assert table_counts(engine)["members"] == 200
    r = import_layer(engine, "members", m2.iloc[:150], replace=True)
    assert r.deleted == 50 and table_counts(engine)["members"] == 150


@pytest.mark.db
def test_every_grid_gets_h3_cells_even_tiny_ones(engine):
    tiny = box(120.1000, 30.2000, 120.1002, 30.2002)  # ~20 m × 22 m, far smaller than a res-10 cell
    big = box(120.11, 30.20, 120.12, 30.21)
    g = gpd.GeoDataFrame({"grid_code": ["tiny", "big"]}, geometry=[MultiPolygon([tiny]), MultiPolygon([big])], crs="EPSG:4326")
    r = import_layer(engine, "grids", g)
    with engine.connect() as c:
        n = dict(c.execute(sa.text("SELECT grid_code, count(*) FROM grid_cells GROUP BY grid_code")).all())
    assert n["tiny"] == 1 and n["big"] > 50 and r.cells == n["tiny"] + n["big"]


@pytest.mark.db
def test_import_failing_half_way_leaves_tables_as_they_were(engine, hangzhou_scenario, with_grids):
    hh = hangzhou_scenario["households"].iloc[:1000]
    import_layer(engine, "grids", hangzhou_scenario["grids"])
    import_layer(engine, "households", hh.iloc[:100])
    before = table_counts(engine)
    with engine.begin() as c:  # a database-side failure at row 700 of 1000, after the COPY has started
        c.execute(sa.text("""
            CREATE FUNCTION fail_on_row() RETURNS trigger AS $$
            BEGIN IF NEW.household_id = :bad THEN RAISE EXCEPTION 'simulated failure'; END IF; RETURN NEW; END $$
            LANGUAGE plpgsql""".replace(":bad", "'" + hh["household_id"].iloc[700] + "'")))
        c.execute(sa.text("CREATE TRIGGER fail_row BEFORE INSERT OR UPDATE ON households "
                          "FOR EACH ROW EXECUTE FUNCTION fail_on_row()"))
    try:
        changed = hh.copy()
        changed["size"] = 9  # would also update the first 100 rows
        with pytest.raises(sa.exc.DBAPIError, match="simulated failure"):
            import_layer(engine, "households", changed)
        assert table_counts(engine) == before
        with engine.connect() as c:
            assert c.execute(sa.text("SELECT count(*) FROM households WHERE size = 9")).scalar_one() == 0
    finally:
        with engine.begin() as c:
            c.execute(sa.text("DROP TRIGGER fail_row ON households; DROP FUNCTION fail_on_row()"))
