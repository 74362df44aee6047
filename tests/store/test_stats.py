"""Incident KPIs of the leaders' pages (受理率, 按时办结率, 办结率, 平均响应时长, 满意率, 红黄绿灯, overdue list)
on hand-built incident histories that cross a weekend, a public holiday and both deadlines, in the real
PostGIS test database, and ``GET /incidents/stats`` (roles, regions, same 404, nothing written)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
import sqlalchemy as sa

from api.auth import Principal
from gridmap import dispatch as rules
from gridmap.dispatch import LOCAL_TZ
from tests.web.conftest import seed_region

G1 = (121.485, 31.205)  # inside grid G1 (community C1, street S1)
AT = datetime(2026, 1, 23, 12, 0, tzinfo=LOCAL_TZ)  # Friday noon, China time


def _t(day: int, hour: int, month: int = 1) -> datetime:
    return datetime(2026, month, day, hour, 0, tzinfo=LOCAL_TZ)


def _history(engine, incident_id, category, reported, accepted=None, closed=None, rating=None, assigned=None):
    from geodata.store.incidents import create_incident, transition

    create_incident(engine, lon=G1[0], lat=G1[1], category=category, reported_at=reported, incident_id=incident_id)
    if assigned or accepted:
        transition(engine, incident_id, "assign", member_id="M1", at=assigned or reported)
    if accepted:
        transition(engine, incident_id, "accept", at=accepted)
    if closed:
        transition(engine, incident_id, "close", at=closed)
    if rating:
        transition(engine, incident_id, "rate", rating=rating, at=closed)


@pytest.fixture()
def histories(engine):
    """Six incidents in grid G1 (2026-01-01 is a Thursday; Monday 2026-01-19 is made a holiday).

    A complex, Fri 9th 10:00 → due Wed 14th 10:00 (3 working days over the weekend): accepted Fri 15:00,
      closed Tue 13th 18:00 — both on time; rated 5.
    B complex, Fri 9th 10:00: accepted Mon 12th 09:00 (71 h: late), closed Wed 14th 09:00 (on time); rated 3.
    C ordinary, Mon 12th 10:00 → due Tue 13th 10:00: accepted 12:00 (on time), closed Wed 14th 10:00 (late); rated 4.
    D complex, Fri 16th 10:00, Monday a holiday → due Thu 22nd 10:00: accepted 12:00, closed Wed 21st 15:00
      (on time only because of the holiday); not rated.
    E ordinary, Tue 20th 08:00, assigned 09:00, never accepted: red, 52 h overdue, held 75 h at AT.
    F ordinary, Fri 23rd 10:00: still inside both windows at AT — counts in no rate.
    """
    from geodata.store.holidays import save_calendar

    seed_region(engine)
    save_calendar(engine, rules.WorkCalendar(holidays=frozenset({date(2026, 1, 19)})))
    _history(engine, "A", "矛盾纠纷", _t(9, 10), _t(9, 15), _t(13, 18), 5)
    _history(engine, "B", "矛盾纠纷", _t(9, 10), _t(12, 9), _t(14, 9), 3)
    _history(engine, "C", "环境卫生", _t(12, 10), _t(12, 12), _t(14, 10), 4)
    _history(engine, "D", "矛盾纠纷", _t(16, 10), _t(16, 12), _t(21, 15))
    _history(engine, "E", "环境卫生", _t(20, 8), assigned=_t(20, 9))
    _history(engine, "F", "环境卫生", _t(23, 10))
    return engine


def _leader(engine, role="leader", regions=("S1",)):
    return Principal(token_id=0, role=role, regions=list(regions), engine=engine)


def test_deadlines_of_the_histories_cross_weekend_and_holiday(histories):
    with histories.connect() as c:
        due = dict(c.execute(sa.text("SELECT incident_id, deadline_at FROM incidents")).all())
    assert due["A"] == _t(14, 10) and due["C"] == _t(13, 10) and due["D"] == _t(22, 10)


def test_kpis_of_hand_built_histories(histories):
    from api.usecases.leader import incident_stats

    out = incident_stats(histories, _leader(histories), "S1", at=AT)
    total = out["total"]
    assert total["incidents"] == 6 and total["closed"] == 4
    assert total["closed_pct"] == pytest.approx(66.67)
    # 受理率: A, C, D on time of A, B, C, D, E (F's response window is still open)
    assert (total["accepted_on_time"], total["accept_due"]) == (3, 5)
    assert total["acceptance_pct"] == 60.0
    # 按时办结率: A, B, D on time (D thanks to the holiday) of A, B, C, D, E
    assert (total["closed_on_time"], total["close_due"]) == (3, 5)
    assert total["on_time_close_pct"] == 60.0
    # 平均响应时长: (5 + 71 + 2 + 2) / 4 hours
    assert total["avg_response_hours"] == 20.0
    # 满意率: A (5) and C (4) of A, B, C rated
    assert (total["satisfied"], total["rated"]) == (2, 3) and total["satisfaction_pct"] == pytest.approx(66.67)
    for level in ("by_street", "by_community", "by_grid"):
        (row,) = out[level]
        assert {k: row[k] for k in total if k != "code"} == {k: total[k] for k in total if k != "code"}
    assert out["by_street"][0]["code"] == "S1" and out["by_grid"][0]["code"] == "G1"
    members = {r["code"]: r for r in out["by_member"]}
    assert members["M1"]["incidents"] == 5 and members["M1"]["name"] == "王五"
    assert members[None]["incidents"] == 1  # F: nobody holds it yet
    assert {r["code"]: r["incidents"] for r in out["by_category"]} == {"矛盾纠纷": 3, "环境卫生": 3}


def test_response_on_time_but_completion_late_counts_once_each(histories):
    from api.usecases.leader import incident_stats

    out = incident_stats(histories, _leader(histories), "S1", at=AT, category="环境卫生",
                         start=date(2026, 1, 12), end=date(2026, 1, 12))
    total = out["total"]  # C alone
    assert total["incidents"] == 1
    assert total["acceptance_pct"] == 100.0 and total["on_time_close_pct"] == 0.0
    assert total["red"] == 1  # closed late: its light stays red


def test_lights_in_sql_equal_the_python_rule(histories):
    from api.usecases.leader import incident_stats
    from geodata.store.incidents import list_incidents

    expected = {"red": 0, "yellow": 0, "green": 0}
    for inc in list_incidents(histories, "S1", at=AT):
        if inc["light"]:
            expected[inc["light"]] += 1
    total = incident_stats(histories, _leader(histories), "S1", at=AT)["total"]
    assert {k: total[k] for k in expected} == expected
    assert expected["red"] == 2  # C (closed late) and E (open, overdue)


def test_overdue_list_names_the_holder_and_how_long(histories):
    from api.usecases.leader import incident_stats

    (row,) = incident_stats(histories, _leader(histories), "S1", at=AT)["overdue"]
    assert row["incident_id"] == "E" and row["assigned_member_id"] == "M1"
    assert row["overdue_hours"] == 52.0 and row["held_hours"] == 75.0
    assert row["holder_name"] == "王五"


def test_viewer_sees_member_names_masked_and_leader_reads_are_audited(histories):
    from api.usecases.leader import incident_stats

    out = incident_stats(histories, _leader(histories, "viewer"), "S1", at=AT)
    assert out["overdue"][0]["holder_name"] == "王*"
    with histories.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM audit_log")).scalar() == 0
    incident_stats(histories, _leader(histories), "S1", at=AT)
    with histories.connect() as c:
        rows = c.execute(sa.text("SELECT action, what, ids FROM audit_log")).all()
    assert [(r.action, r.what, list(r.ids)) for r in rows] == [("pii_read", "members", ["M1"])]


def test_the_response_deadline_of_the_incident_is_used(histories):
    from api.usecases.leader import incident_stats

    with histories.begin() as c:  # the second clock (respond_due_at), e.g. a category given 72 h to respond
        c.execute(sa.text("UPDATE incidents SET respond_due_at = reported_at + interval '72 hours' WHERE incident_id = 'B'"))
    total = incident_stats(histories, _leader(histories), "S1", at=AT)["total"]
    assert total["accepted_on_time"] == 4  # B's 71 h acceptance is now on time


# -- the JSON route ----------------------------------------------------------------------------------

@pytest.fixture()
def client(histories, db_url):
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(db_url)) as c:
        yield c


def _h(engine, role, regions):
    from geodata.store import auth as store

    _, tok = store.create_token(engine, role, regions)
    return {"Authorization": f"Bearer {tok}"}


def _counts(engine) -> dict:
    with engine.connect() as c:
        return {t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in
                ("incidents", "incident_events", "members", "grids")}


def test_route_gives_the_use_case_figures(client, histories):
    r = client.get("/incidents/stats", params={"region": "C1", "from": "2026-01-09", "to": "2026-01-16"},
                   headers=_h(histories, "leader", ["S1"]))
    assert r.status_code == 200, r.text
    total = r.json()["total"]
    assert total["incidents"] == 4 and total["closed"] == 4  # A–D, all closed: no clock depends on now
    assert total["acceptance_pct"] == 75.0 and total["on_time_close_pct"] == 75.0 and total["closed_pct"] == 100.0


def test_route_refuses_other_regions_wrong_roles_and_bad_windows_writing_nothing(client, histories):
    before = _counts(histories)
    other = client.get("/incidents/stats", params={"region": "S1"}, headers=_h(histories, "leader", ["S2"]))
    missing = client.get("/incidents/stats", params={"region": "NOPE"}, headers=_h(histories, "leader", ["S2"]))
    assert other.status_code == missing.status_code == 404 and other.json() == missing.json()
    assert client.get("/incidents/stats", params={"region": "S1"},
                      headers=_h(histories, "planner", ["S1"])).status_code == 403
    assert client.get("/incidents/stats", params={"region": "S1"}).status_code == 401
    bad = client.get("/incidents/stats", params={"region": "S1", "from": "2026-02-01", "to": "2026-01-01"},
                     headers=_h(histories, "leader", ["S1"]))
    assert bad.status_code == 422 and "to" in bad.text
    assert client.get("/incidents/stats", params={"region": "S1", "from": "yesterday"},
                      headers=_h(histories, "leader", ["S1"])).status_code == 422
    assert client.get("/incidents/stats", params={"region": "*"},
                      headers=_h(histories, "leader", ["S1"])).status_code == 404  # the city is not theirs
    assert _counts(histories) == before


def test_whole_city_for_callers_everywhere(client, histories):
    r = client.get("/incidents/stats", params={"region": "*"}, headers=_h(histories, "admin", ["*"]))
    assert r.status_code == 200 and r.json()["total"]["incidents"] == 6 and r.json()["region"] is None


def test_everywhere_user_opens_on_a_community_when_no_streets_are_loaded(engine):
    """The bundled sample has communities and grids but no streets: a 全部辖区 leader still gets a page."""
    import geopandas as gpd
    from shapely.geometry import MultiPolygon, box

    from geodata.store.importer import import_layer
    from geodata.store.stats import first_street

    squares = [MultiPolygon([box(121.0, 31.0, 121.01, 31.01)]), MultiPolygon([box(121.01, 31.0, 121.02, 31.01)])]
    assert first_street(engine) is None  # nothing loaded
    import_layer(engine, "grids", gpd.GeoDataFrame({"grid_code": ["G2", "G1"]}, geometry=squares, crs="EPSG:4326"))
    assert first_street(engine) == "G1"
    import_layer(engine, "communities", gpd.GeoDataFrame({"code": ["C9", "C1"], "name": ["九", "一"]},
                                                         geometry=squares, crs="EPSG:4326"))
    assert first_street(engine) == "C1"
