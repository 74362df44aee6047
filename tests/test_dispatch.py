"""Dispatch: deadlines and working days, 红黄绿灯 lights, the incident life cycle, exact nearest
responders (KD-tree on the sphere and PostGIS KNN, both against brute-force haversine), routing at
grid edges, escalation grid → community → street, and the real Hangzhou incidents."""

from __future__ import annotations

import itertools
import re
from datetime import date, datetime, timedelta, timezone

import geopandas as gpd
import numpy as np
import pytest
import sqlalchemy as sa
from shapely.geometry import MultiPolygon, box

from gridmap import dispatch as rules
from reference import brute_force_nearest
from gridmap.dispatch import LOCAL_TZ

CST = LOCAL_TZ
LON0, LAT0 = 120.17, 30.28  # Hangzhou
M_PER_DEG_LAT = 111_195.08
M_PER_DEG_LON = M_PER_DEG_LAT * np.cos(np.radians(LAT0))

#: China's 2018 National Day holiday: 1–7 October off, Saturday 29 and Sunday 30 September worked.
NATIONAL_DAY_2018 = """# date,kind,name
2018-09-29,workday,国庆调休
2018-09-30,workday,国庆调休
2018-10-01,holiday,国庆节
2018-10-02,holiday
2018-10-03,holiday
2018-10-04,休
2018-10-05,holiday
"""


def cst(*a):
    return datetime(*a, tzinfo=CST)


# -- deadlines -----------------------------------------------------------------------------------

def test_ordinary_deadline_is_24_clock_hours_even_over_a_weekend():
    fri = cst(2026, 11, 20, 10, 0)  # a Friday
    assert rules.deadline(fri, rules.ORDINARY) == cst(2026, 11, 21, 10, 0)
    # naive = China time; UTC input is converted
    assert rules.deadline(datetime(2026, 11, 20, 10, 0), rules.ORDINARY) == cst(2026, 11, 21, 10, 0)
    assert rules.deadline(datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc), rules.ORDINARY) == cst(2026, 11, 21, 10, 0)


@pytest.mark.parametrize("reported, due", [
    (cst(2026, 11, 20, 10, 0), cst(2026, 11, 25, 10, 0)),   # Fri → Wed (Sat/Sun skipped)
    (cst(2026, 11, 18, 15, 30), cst(2026, 11, 23, 15, 30)),  # Wed → Mon
    (cst(2026, 11, 16, 9, 0), cst(2026, 11, 19, 9, 0)),     # Mon → Thu, no weekend
    (cst(2026, 11, 21, 10, 0), cst(2026, 11, 26, 0, 0)),    # Sat: clock starts Mon 00:00 → Thu 00:00
    (cst(2026, 11, 22, 23, 59), cst(2026, 11, 26, 0, 0)),   # Sun late: same
    (cst(2026, 11, 20, 23, 59), cst(2026, 11, 25, 23, 59)),  # Fri just before midnight
])
def test_complex_deadline_skips_weekends(reported, due):
    got = rules.deadline(reported, rules.COMPLEX)
    assert got == due
    # exactly three working days lie in the window's dates after the start day
    start = reported.date() if reported.weekday() < 5 else reported.date() + timedelta(days=7 - reported.weekday())
    days = [start + timedelta(days=i) for i in range(1, (got.date() - start).days + 1)]
    assert sum(d.weekday() < 5 for d in days) == 3


def test_complex_deadline_honours_a_holiday_file(tmp_path):
    from geodata.calendar import read_calendar_file

    f = tmp_path / "holidays.csv"
    f.write_text(NATIONAL_DAY_2018, encoding="utf-8")
    cal = read_calendar_file(f)
    assert date(2018, 10, 4) in cal.holidays and date(2018, 9, 30) in cal.workdays
    assert not cal.is_working_day(date(2018, 10, 1)) and cal.is_working_day(date(2018, 9, 30))
    # Sunday 30 Sep 2018 was a make-up working day: the clock runs from the report, then 1–7 Oct are off.
    assert rules.deadline(cst(2018, 9, 30, 11, 9), rules.COMPLEX, cal) == cst(2018, 10, 10, 11, 9)
    # Friday 28 Sep: Sat 29 (worked), Sun 30 (worked), Mon 8 Oct.
    assert rules.deadline(cst(2018, 9, 28, 9, 0), rules.COMPLEX, cal) == cst(2018, 10, 8, 9, 0)
    # Without the calendar the same report would be due on 3 Oct (a holiday).
    assert rules.deadline(cst(2018, 9, 28, 9, 0), rules.COMPLEX) == cst(2018, 10, 3, 9, 0)
    # Reported on a holiday: clock starts at the next working day (Mon 8 Oct 00:00) → Thu 11 Oct 00:00.
    assert rules.deadline(cst(2018, 10, 2, 12, 0), rules.COMPLEX, cal) == cst(2018, 10, 11, 0, 0)
    # the ordinary 24 h does not care about holidays
    assert rules.deadline(cst(2018, 10, 2, 12, 0), rules.ORDINARY, cal) == cst(2018, 10, 3, 12, 0)


@pytest.mark.parametrize("text, msg", [("2018-13-01", "line 1"), ("x\n", "line 1"),
                                       ("2018-10-01\n2018-10-02,party", "line 2.*unknown kind")])
def test_bad_calendar_lines_are_refused_with_their_line(text, msg):
    with pytest.raises(ValueError, match=msg):
        rules.parse_calendar(text.splitlines(), source="h.csv")


def test_response_kind_rules():
    assert rules.response_kind("民政") == rules.ORDINARY
    assert rules.response_kind("矛盾纠纷") == rules.COMPLEX
    assert rules.response_kind("民政", level=2) == rules.COMPLEX
    assert rules.response_kind("矛盾纠纷", kind="ordinary") == rules.ORDINARY
    with pytest.raises(ValueError):
        rules.response_kind("民政", kind="urgent")


# -- lights -----------------------------------------------------------------------------------------

def test_lights_green_yellow_red_boundaries():
    r = cst(2026, 11, 20, 0, 0)
    d = r + timedelta(hours=24)  # yellow from hour 19.2 (last 20 %)
    assert rules.light(r, d, r + timedelta(hours=19, minutes=11)) == "green"
    assert rules.light(r, d, r + timedelta(hours=19, minutes=12)) == "yellow"
    assert rules.light(r, d, d) == "yellow"
    assert rules.light(r, d, d + timedelta(seconds=1)) == "red"
    # a closed incident keeps the light of its closing time, whatever "now" is
    assert rules.light(r, d, d + timedelta(days=9), closed_at=r + timedelta(hours=2)) == "green"
    assert rules.light(r, d, r + timedelta(hours=1), closed_at=d + timedelta(hours=1)) == "red"
    assert rules.lights([r, r], [d, None], r + timedelta(hours=1)) == ["green", None]


# -- life cycle ------------------------------------------------------------------------------------

LEGAL = {("reported", "assign"): "assigned", ("reported", "claim"): "accepted", ("assigned", "assign"): "assigned", ("assigned", "accept"): "accepted",
         ("accepted", "close"): "closed", ("closed", "rate"): "rated"}


@pytest.mark.parametrize("state, action", list(itertools.product(rules.STATES, rules.ACTIONS)))
def test_state_machine_every_pair(state, action):
    if (state, action) in LEGAL:
        assert rules.next_state(state, action) == LEGAL[(state, action)]
    else:
        with pytest.raises(rules.IllegalTransition, match=f"cannot {action}"):
            rules.next_state(state, action)


def test_ratings_and_statuses():
    assert rules.check_rating(5) == 5
    for bad in (0, 6, 2.5, True):
        with pytest.raises(ValueError):
            rules.check_rating(bad)
    assert rules.normalise_status("网格员关闭") == "closed" == rules.normalise_status("网格长关闭")
    assert rules.normalise_status(None) == "reported" and rules.normalise_status("已派单") == "assigned"
    assert rules.normalise_status("closed") == "closed"
    with pytest.raises(ValueError):
        rules.normalise_status("不明")


def test_escalate_takes_the_first_level_with_someone():
    calls = []

    def find(found):
        def f(level):
            calls.append(level)
            return found.get(level)
        return f

    assert rules.escalate(find({"grid": [1]})) == ("grid", [1])
    assert rules.escalate(find({"grid": [], "community": [], "street": [7]})) == ("street", [7])
    assert rules.escalate(find({"grid": [], "community": [], "street": []})) == ("street", [])
    assert rules.escalate(find({"grid": None, "community": [3], "street": []})) == ("community", [3])
    assert rules.escalate(find({})) == (None, [])


# -- nearest: KD-tree on the sphere vs brute force ---------------------------------------------------

SKILLS = ("法律", "医疗", "心理", "维修", "消防")


def random_members(n, seed, spread_m=5000.0, dup_share=0.05):
    rng = np.random.default_rng(seed)
    lon = LON0 + rng.uniform(-spread_m, spread_m, n) / M_PER_DEG_LON
    lat = LAT0 + rng.uniform(-spread_m, spread_m, n) / M_PER_DEG_LAT
    dup = rng.random(n) < dup_share  # some members at the very same spot: ties broken by id
    src = rng.integers(0, n, n)
    lon[dup], lat[dup] = lon[src[dup]], lat[src[dup]]
    skills = [list(rng.choice(SKILLS, rng.integers(0, 3), replace=False)) for _ in range(n)]
    avail = rng.random(n) < 0.8
    ids = [f"M{i:05d}" for i in rng.permutation(n)]
    return ids, lon, lat, skills, avail


def query_cases(seed, n_queries=40):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_queries):
        lon = LON0 + rng.uniform(-6000, 6000) / M_PER_DEG_LON
        lat = LAT0 + rng.uniform(-6000, 6000) / M_PER_DEG_LAT
        k = int(rng.choice([1, 3, 5, 10, 50]))
        skill = [None, "法律", "心理"][i % 3]
        radius = [None, 300.0, 1000.0, 4000.0][i % 4]
        out.append((lon, lat, k, skill, radius))
    return out


def test_sphere_kdtree_equals_brute_force():
    ids, lon, lat, skills, avail = random_members(3000, seed=3)
    idx = rules.ResponderIndex(ids, lon, lat, skills, avail)
    for qlon, qlat, k, skill, radius in query_cases(4, 120):
        got = idx.nearest(qlon, qlat, k=k, skill=skill, radius_m=radius)
        want = brute_force_nearest(qlon, qlat, ids, lon, lat, skills, avail, k=k, skill=skill, radius_m=radius)
        assert [g[0] for g in got] == [w[0] for w in want]
        np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], rtol=0, atol=1e-6)
        assert all(ok for ok in (avail[ids.index(g[0])] for g in got))


def test_ties_at_the_cut_are_broken_by_id():
    ids = ["b", "a", "c", "d"]
    lon = [LON0, LON0, LON0, LON0 + 0.01]
    lat = [LAT0 + 0.001] * 3 + [LAT0]
    idx = rules.ResponderIndex(ids, lon, lat)
    assert [i for i, _ in idx.nearest(LON0, LAT0, k=2)] == ["a", "b"]
    assert idx.nearest(LON0, LAT0, k=5, radius_m=50) == []


def test_cli_nearest_on_files(tmp_path):
    from typer.testing import CliRunner

    from api.cli import app

    ids, lon, lat, skills, avail = random_members(400, seed=9)
    gdf = gpd.GeoDataFrame({"member_id": ids, "skills": [",".join(s) for s in skills], "available": avail},
                           geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    path = tmp_path / "members.geojson"
    gdf.to_file(path, driver="GeoJSON")
    at = (LON0 + 0.003, LAT0 - 0.002)
    r = CliRunner().invoke(app, ["nearest", "--members", str(path), "--at", f"{at[0]},{at[1]}", "--skill", "法律",
                                 "-k", "4"], terminal_width=200)
    assert r.exit_code == 0, r.output
    want = brute_force_nearest(*at, ids, lon, lat, skills, avail, k=4, skill="法律")
    shown = re.findall(r"(M\d{5})", r.output)
    assert shown == [w[0] for w in want]
    assert f"{want[0][1]:,.1f}" in r.output
    r = CliRunner().invoke(app, ["nearest", "--members", str(path), "--at", "30.28,120.17"])
    assert r.exit_code != 0


# -- PostGIS ---------------------------------------------------------------------------------------

def insert_members(engine, ids, lon, lat, skills, avail, grid_codes=None, kind="member"):
    grid_codes = grid_codes if grid_codes is not None else [None] * len(ids)
    rows = [{"id": i, "g": g, "s": list(s), "a": bool(a), "lon": float(x), "lat": float(y), "k": kind}
            for i, g, s, a, x, y in zip(ids, grid_codes, skills, avail, lon, lat)]
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO members (member_id, grid_code, kind, skills, available, h3, geom) "
                          "VALUES (:id, :g, :k, :s, :a, 0, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"), rows)


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
        # the queries walk the geography index, never sort the whole table
        from geodata.store.nearest import _knn_sql, _nearest_sql

        conn.exec_driver_sql("ANALYZE members")
        for sql, n_scans in ((_knn_sql, 1), (_nearest_sql, 2)):
            plan = "\n".join(r[0] for r in conn.execute(sa.text("EXPLAIN " + sql(False, False, False, True)),
                                                         {"lon": LON0, "lat": LAT0, "k": 5, "kk": 13}))
            # partitioned members (0014): the geography GiST shows under its partition name (…_geom_idx1)
            geog_scans = plan.count("ix_members_geog") + plan.count("_geom_idx1 on members_p_")
            assert geog_scans == n_scans and "Seq Scan" not in plan, plan


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


def _square(x0_m, y0_m, size_m):
    """A square of ``size_m`` metres whose south-west corner is ``(x0_m, y0_m)`` metres from (LON0, LAT0)."""
    return MultiPolygon([box(LON0 + x0_m / M_PER_DEG_LON, LAT0 + y0_m / M_PER_DEG_LAT,
                             LON0 + (x0_m + size_m) / M_PER_DEG_LON, LAT0 + (y0_m + size_m) / M_PER_DEG_LAT)])


def _pt(x_m, y_m):
    return LON0 + x_m / M_PER_DEG_LON, LAT0 + y_m / M_PER_DEG_LAT


def load_areas(engine):
    """Street S1 = communities C1 (grids G1, G2) and C2 (grid G3); street S2 = C3 (grid G4), 2 km east.

    Grids are 400 m squares: G1 [0,400], G2 [400,800] (shares G1's east edge), G3 [800,1200],
    G4 [2000,2400]. G3 and G4 carry no community_code: their community is found by location.
    """
    from geodata.store.importer import import_layer

    streets = gpd.GeoDataFrame({"code": ["S1", "S2"], "name": ["一街", "二街"]},
                               geometry=[_square(-10, -10, 1220), _square(1990, -10, 420)], crs="EPSG:4326")
    comms = gpd.GeoDataFrame({"code": ["C1", "C2", "C3"], "street_code": ["S1", "S1", None]},
                             geometry=[_square(0, 0, 800), _square(800, 0, 400), _square(2000, 0, 400)],
                             crs="EPSG:4326")
    grids = gpd.GeoDataFrame({"grid_code": ["G1", "G2", "G3", "G4"], "community_code": ["C1", "C1", None, None]},
                             geometry=[_square(0, 0, 400), _square(400, 0, 400), _square(800, 0, 400),
                                       _square(2000, 0, 400)], crs="EPSG:4326")
    import_layer(engine, "streets", streets)
    import_layer(engine, "communities", comms)
    import_layer(engine, "grids", grids)


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


def test_a_missing_rating_is_a_value_error_not_a_type_error():
    # "rate" without a rating used to reach int(None) and fail with TypeError (an HTTP 500)
    with pytest.raises(ValueError, match="rating must be an integer"):
        rules.check_rating(None)
