"""Dispatch in PostGIS: KNN nearest responders against the brute force, routing at grid edges,
escalation grid → community → street, incident creation, the migration's downgrade, real Hangzhou incidents.
"""

from __future__ import annotations

import re
from datetime import datetime

import geopandas as gpd
import numpy as np
import pytest
import sqlalchemy as sa

from gridmap import dispatch as rules
from reference import brute_force_nearest
from gridmap.dispatch import LOCAL_TZ

from dispatch_cases import NATIONAL_DAY_2018, _pt, cst, insert_members, load_areas, query_cases, random_members


CST = LOCAL_TZ
LON0, LAT0 = 120.17, 30.28  # Hangzhou


pytest_db = pytest.mark.db


@pytest_db
def test_postgis_knn_equals_brute_force(engine):
    from geodata.store.nearest import nearest_responders

    ids, lon, lat, skills, avail = random_members(3000, seed=11)
    insert_members(engine, ids, lon, lat, skills, avail)
    with engine.connect() as conn:
        for qlon, qlat, k, skill, radius in query_cases(12, 80):
            got = nearest_responders(conn, qlon, qlat, k=k, skill=skill, radius_m=radius)
            want = brute_force_nearest(qlon, qlat, ids, lon, lat, skills, avail, k=k, skill=skill,
                                             radius_m=radius)
            assert [g["member_id"] for g in got] == [w[0] for w in want], (qlon, qlat, k, skill, radius)
            np.testing.assert_allclose([g["distance_m"] for g in got], [w[1] for w in want], rtol=1e-7, atol=1e-3)
            assert all(g["available"] for g in got)
            if skill:
                assert all(skill in g["skills"] for g in got)
        # unavailable responders come back only when asked for
        every = nearest_responders(conn, LON0, LAT0, k=3000, only_available=False)
        assert len(every) == 3000
        # the queries walk the n-D index of sphere points, never sort the whole table: without a street,
        # the unpartitioned responder_index (0020); with one, that street's partition of members
        from geodata.store.nearest import _knn_sql, _nearest_sql

        conn.exec_driver_sql("ANALYZE members; ANALYZE responder_index")
        for sql, n_scans in ((_knn_sql, 1), (_nearest_sql, 2)):
            plan = "\n".join(r[0] for r in conn.execute(sa.text("EXPLAIN " + sql(False, False, False, True)),
                                                         {"lon": LON0, "lat": LAT0, "k": 5, "kk": 13}))
            index_scans = plan.count("using ix_responder_index_xyz on responder_index")
            assert index_scans >= n_scans and "Seq Scan" not in plan and " on members" not in plan, plan


@pytest_db
def test_postgis_knn_breaks_many_ties_by_id(engine):
    """More members tied at the k-th place than the one-scan query fetches: the exact query ranks them."""
    from geodata.store.nearest import TIE_MARGIN, nearest_responders

    n = TIE_MARGIN * 3
    rng = np.random.default_rng(5)
    ids = [f"T{i:03d}" for i in rng.permutation(n)] + ["A-near", "Z-far"]
    lon = [LON0 + 0.001] * n + [LON0 + 0.0001, LON0 + 0.01]
    lat = [LAT0] * (n + 2)
    insert_members(engine, ids, lon, lat, [[]] * (n + 2), [True] * (n + 2))
    with engine.connect() as conn:
        for k in (1, 3, TIE_MARGIN + 2, n + 2):
            got = [g["member_id"] for g in nearest_responders(conn, LON0, LAT0, k=k)]
            want = [w[0] for w in brute_force_nearest(LON0, LAT0, ids, lon, lat, k=k)]
            assert got == want
        assert got[:3] == ["A-near", "T000", "T001"] and got[-1] == "Z-far"


@pytest_db
@pytest.mark.parametrize("xy, want", [
    ((200, 200), ("G1", "C1", "S1")),
    ((400, 200), ("G1", "C1", "S1")),             # exactly on the G1|G2 edge: the lower code
    ((400.5, 200), ("G2", "C1", "S1")),           # half a metre inside G2
    ((399.5, 200), ("G1", "C1", "S1")),
    ((800, 399.99), ("G2", "C1", "S1")),          # near the G2|G3 corner, on the edge
    ((1000, 200), ("G3", "C2", "S1")),            # community by location, street from the community
    ((1230, 200), ("G3", "C2", "S1")),            # 30 m outside every grid: snapped to the nearest
    ((2200, 200), ("G4", "C3", "S2")),            # community has no street_code: by location
    ((1600, 200), (None, None, None)),            # 400 m from anything: unrouted
])
def test_routing_at_grid_edges(engine, xy, want):
    from geodata.store.routing import route_point

    load_areas(engine)
    with engine.connect() as conn:
        r = route_point(conn, *_pt(*xy))
    assert (r["grid_code"], r["community_code"], r["street_code"]) == want


@pytest_db
def test_escalation_grid_community_street(engine):
    from geodata.store.routing import grids_of, propose, route_point

    load_areas(engine)
    at = _pt(100, 100)  # in G1
    with engine.connect() as conn:
        assert grids_of(conn, "community", "C1") == ["G1", "G2"]
        assert grids_of(conn, "community", "C2") == ["G3"]
        assert grids_of(conn, "street", "S1") == ["G1", "G2", "G3"]
        assert grids_of(conn, "street", "S2") == ["G4"]
    route = {"grid_code": "G1", "community_code": "C1", "street_code": "S1"}

    def run(skill=None, radius=150.0):
        with engine.connect() as conn:
            assert route_point(conn, *at) == route
            return propose(conn, *at, route, skill=skill, radius_m=radius)

    # nobody anywhere
    assert run() == ("street", [])
    # a member of G4 (other street) never helps
    insert_members(engine, ["m4"], *zip(_pt(2100, 100)), [["法律"]], [True], ["G4"])
    assert run() == ("street", [])
    # a street member (G3, community C2)
    insert_members(engine, ["m3"], *zip(_pt(900, 100)), [["法律"]], [True], ["G3"])
    lv, c = run()
    assert lv == "street" and [m["member_id"] for m in c] == ["m3"]
    # a community member (G2)
    insert_members(engine, ["m2"], *zip(_pt(700, 100)), [["医疗"]], [True], ["G2"])
    lv, c = run()
    assert lv == "community" and [m["member_id"] for m in c] == ["m2"]  # m3 is of the other community
    # the G2 member lacks the skill: back to the street
    lv, c = run(skill="法律")
    assert lv == "street" and [m["member_id"] for m in c] == ["m3"]
    # a G1 member 250 m away: outside the 150 m radius (community level), inside 300 m (grid level)
    insert_members(engine, ["m1"], *zip(_pt(350, 100)), [["法律"]], [True], ["G1"])
    assert run()[0] == "community"
    lv, c = run(radius=300.0)
    assert lv == "grid" and [m["member_id"] for m in c] == ["m1"]
    # unavailable: not proposed
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE members SET available = false WHERE member_id = 'm1'"))
    assert run(radius=300.0)[0] == "community"


@pytest_db
def test_create_incident_routes_sets_deadline_and_escalates(engine, tmp_path):
    from geodata.store import incidents as store
    from geodata.store.holidays import save_calendar

    load_areas(engine)
    insert_members(engine, ["m2"], *zip(_pt(700, 100)), [["医疗"]], [True], ["G2"])
    cal = rules.parse_calendar(NATIONAL_DAY_2018.splitlines())
    inc = store.create_incident(engine, lon=_pt(100, 100)[0], lat=_pt(100, 100)[1], category="矛盾纠纷",
                                reported_at=datetime(2018, 9, 28, 9, 0), calendar=cal)
    assert (inc["grid_code"], inc["community_code"], inc["street_code"]) == ("G1", "C1", "S1")
    assert inc["response_kind"] == "complex" and inc["deadline_at"] == cst(2018, 10, 8, 9, 0)
    assert inc["escalation_level"] == "community" and inc["escalated"]
    assert [p["member_id"] for p in inc["proposed"]] == ["m2"]
    assert inc["status"] == "reported"
    # the stored calendar is used too
    save_calendar(engine, cal)
    inc2 = store.create_incident(engine, lon=_pt(100, 100)[0], lat=_pt(100, 100)[1], category="民政", level=3,
                                 reported_at=datetime(2018, 9, 28, 9, 0))
    assert inc2["deadline_at"] == cst(2018, 10, 8, 9, 0)
    # life cycle with history
    store.transition(engine, inc["incident_id"], "assign")  # default: the nearest suitable (m2)
    store.transition(engine, inc["incident_id"], "accept", acting_member="m2")
    with pytest.raises(rules.IllegalTransition):
        store.transition(engine, inc["incident_id"], "accept")
    store.transition(engine, inc["incident_id"], "close")
    done = store.transition(engine, inc["incident_id"], "rate", rating=4)
    assert done["status"] == "rated" and done["rating"] == 4 and done["assigned_member_id"] == "m2"
    ev = store.incident_events(engine, inc["incident_id"])
    assert [(e["action"], e["to_status"]) for e in ev] == [("report", "reported"), ("assign", "assigned"),
                                                          ("accept", "accepted"), ("close", "closed"),
                                                          ("rate", "rated")]


@pytest_db
def test_dispatch_migration_downgrades_cleanly():
    from conftest import create_database, drop_database
    from geodata.store import migrate

    url = create_database("gridmap_disp")
    try:
        migrate.upgrade(url)
        eng = sa.create_engine(url)
        assert {"incident_events", "holidays"} <= set(sa.inspect(eng).get_table_names())
        migrate.downgrade(url, "0001_initial")
        insp = sa.inspect(eng)
        assert not {"incident_events", "holidays"} & set(insp.get_table_names())
        assert "closed_at" not in {c["name"] for c in insp.get_columns("incidents")}
        with eng.connect() as c:
            assert c.execute(sa.text("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'ix_%_geog'")).scalar() == 0
        migrate.upgrade(url)
        assert "closed_at" in {c["name"] for c in sa.inspect(eng).get_columns("incidents")}
        eng.dispose()
    finally:
        drop_database(url)


# -- the real Hangzhou incidents -------------------------------------------------------------------

@pytest_db
def test_hangzhou_incidents_import_and_route_to_real_grids(engine, hangzhou, hangzhou_grids):
    from geodata.io import read_layer
    from geodata.store import incident_import as store
    from geodata.store.importer import import_layer

    import_layer(engine, "streets", read_layer(hangzhou / "streets.geojson", "streets", fix=True))
    import_layer(engine, "communities", read_layer(hangzhou / "communities.geojson", "communities", fix=True))
    import_layer(engine, "grids", hangzhou_grids)
    ev = read_layer(hangzhou / "events.geojson", "incidents", make_ids=True)
    assert len(ev) == 228
    cal = rules.parse_calendar(NATIONAL_DAY_2018.splitlines())
    r = store.import_incidents(engine, ev, calendar=cal)
    assert (r.rows, r.inserted, r.routed, r.unrouted) == (228, 228, 228, 0)
    with engine.connect() as c:
        rows = {x.incident_id: x for x in c.execute(sa.text(
            "SELECT incident_id, grid_code, community_code, street_code, status, reported_at, deadline_at, "
            "response_kind FROM incidents"))}
        names = dict(c.execute(sa.text("SELECT grid_code, name FROM grids")).all())
        streets = {x[0] for x in c.execute(sa.text("SELECT code FROM streets"))}
        n_events = c.execute(sa.text("SELECT count(*) FROM incident_events WHERE action = 'import'")).scalar()
    assert n_events == 228
    # every routed grid contains the point (shapely agrees)
    joined = gpd.sjoin(ev, hangzhou_grids[["grid_code", "geometry"]], how="left", predicate="intersects")
    contains = joined.groupby("incident_id")["grid_code"].agg(set).to_dict()
    for iid, row in rows.items():
        assert row.grid_code in contains[iid]
        assert row.community_code and row.street_code in streets
        assert row.grid_code.startswith(row.community_code + "-") and row.community_code.startswith(row.street_code + "-")
        assert row.status == "closed"
    # and it is the grid the event says reported it (灯芯巷网格1 → 天水街道灯芯巷社区灯芯巷社区网格1)
    by_id = ev.set_index("incident_id")
    same = 0
    for iid, row in rows.items():
        m = re.match(r"(.+?)网格(\d+)$", by_id.loc[iid, "reported_by_grid"])
        assert m and m.group(1) in names[row.grid_code]
        same += names[row.grid_code].endswith(f"网格{m.group(2)}")
    assert same >= 0.9 * len(rows)
    # deadlines: ordinary = +24 h; complex ones follow the National Day calendar
    for iid, row in rows.items():
        rep = by_id.loc[iid, "reported_at"].to_pydatetime().replace(tzinfo=CST)
        assert row.reported_at == rep
        kind = rules.response_kind(by_id.loc[iid, "category"], int(by_id.loc[iid, "level"]))
        assert row.response_kind == kind
        assert row.deadline_at == rules.deadline(rep, kind, cal)
    assert any(r.response_kind == "complex" for r in rows.values())
    # a second import (through the command line) adds no row and routes the same
    from typer.testing import CliRunner

    from api.cli import app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRIDMAP_DATABASE_URL", str(engine.url.render_as_string(hide_password=False)))
        out = CliRunner().invoke(app, ["import", "incidents", str(hangzhou / "events.geojson")], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "228 rows read, 0 inserted, 228 updated, 228 routed to a grid, 0 outside every grid" in " ".join(out.output.split())
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM incidents")).scalar() == 228
        assert c.execute(sa.text("SELECT count(*) FROM incidents WHERE grid_code IS NULL")).scalar() == 0
