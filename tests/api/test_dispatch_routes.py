"""The dispatch HTTP API against a real PostGIS: nearest responders, incident life cycle (every illegal
transition is 409), lights, escalation, a responder's own view, coordinate systems, roles."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gridmap import dispatch as rules
from reference import brute_force_nearest
from dispatch_cases import LAT0, LON0, _pt, insert_members, load_areas, query_cases, random_members

pytestmark = pytest.mark.db


@pytest.fixture()
def client(db_url, engine):
    from api.app import create_app

    return TestClient(create_app(db_url))


def token(engine, role="dispatcher", regions=("*",), member=None):
    from geodata.store import auth

    _, tok = auth.create_token(engine, role, list(regions), member_id=member)
    return {"Authorization": f"Bearer {tok}"}


def test_health_and_docs(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["database"] == "reachable"
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/responders/nearest", "/incidents", "/incidents/{incident_id}/assign", "/incidents/{incident_id}/accept",
              "/incidents/{incident_id}/close", "/incidents/{incident_id}/rate", "/me/households", "/me/incidents"):
        assert p in paths


def test_nearest_equals_brute_force(client, engine):
    ids, lon, lat, skills, avail = random_members(1500, seed=21)
    insert_members(engine, ids, lon, lat, skills, avail)
    h = token(engine)
    for qlon, qlat, k, skill, radius in query_cases(22, 30):
        params = {"lon": qlon, "lat": qlat, "k": k}
        if skill:
            params["skill"] = skill
        if radius:
            params["radius_m"] = radius
        r = client.get("/responders/nearest", params=params, headers=h)
        assert r.status_code == 200, r.text
        want = brute_force_nearest(qlon, qlat, ids, lon, lat, skills, avail, k=k, skill=skill, radius_m=radius)
        got = r.json()
        assert [g["member_id"] for g in got] == [w[0] for w in want]
        np.testing.assert_allclose([g["distance_m"] for g in got], [w[1] for w in want], rtol=1e-7, atol=1e-3)
        assert all("name" not in g and "phone" not in g for g in got)


@pytest.mark.parametrize("params, code", [
    ({"lon": 200, "lat": 30}, 422), ({"lon": 120, "lat": 95}, 422), ({"lon": 120, "lat": 30, "k": 0}, 422),
    ({"lon": 120, "lat": 30, "radius_m": -5}, 422), ({"lat": 30}, 422),
])
def test_nearest_refuses_bad_parameters(client, engine, params, code):
    assert client.get("/responders/nearest", params=params, headers=token(engine)).status_code == code


def test_tokens_and_roles(client, engine):
    assert client.get("/responders/nearest", params={"lon": 120, "lat": 30}).status_code == 401
    assert client.get("/responders/nearest", params={"lon": 120, "lat": 30},
                      headers=token(engine, "viewer")).status_code == 403
    body = {"lon": LON0, "lat": LAT0, "category": "民政"}
    assert client.post("/incidents", json=body, headers=token(engine, "viewer")).status_code == 403


def _report(client, h, x=100, y=100, **kw):
    lon, lat = _pt(x, y)
    body = {"lon": lon, "lat": lat, "category": "民政", **kw}
    r = client.post("/incidents", json=body, headers=h)
    assert r.status_code == 201, r.text
    return r.json()


def test_report_routes_proposes_and_escalates(client, engine):
    load_areas(engine)
    h = token(engine)
    insert_members(engine, ["far", "near", "other"], *zip(_pt(350, 100), _pt(150, 120), _pt(700, 100)),
                   [["法律"], ["医疗"], ["法律"]], [True, True, True], ["G1", "G1", "G2"])
    inc = _report(client, h)
    assert (inc["grid_code"], inc["community_code"], inc["street_code"]) == ("G1", "C1", "S1")
    assert inc["escalation_level"] == "grid" and not inc["escalated"]
    assert [p["member_id"] for p in inc["proposed"]] == ["near", "far"]
    assert inc["light"] == "green" and inc["response_kind"] == "ordinary"
    # the skill only "far" (outside a 200 m radius) and "other" (G2) have
    inc = _report(client, h, required_skill="法律", radius_m=200)
    assert inc["escalation_level"] == "community" and inc["escalated"]
    assert [p["member_id"] for p in inc["proposed"]] == ["far", "other"]
    # nobody with the skill anywhere: street level reached, nobody proposed
    inc = _report(client, h, required_skill="心理")
    assert inc["escalation_level"] == "street" and inc["proposed"] == []
    r = client.post(f"/incidents/{inc['incident_id']}/assign", headers=h, json={})
    assert r.status_code == 409
    # complex by category: 3 working days from a Friday → Wednesday
    inc = _report(client, h, category="矛盾纠纷", reported_at="2026-11-20T10:00:00+08:00")
    assert inc["response_kind"] == "complex"
    assert datetime.fromisoformat(inc["deadline_at"]) == datetime(2026, 11, 25, 10, 0, tzinfo=rules.LOCAL_TZ)


def test_report_in_gcj02_is_shifted_to_wgs84(client, engine):
    from geodata.crs import from_wgs84

    load_areas(engine)
    lon, lat = _pt(390, 200)  # 10 m west of the G1|G2 edge; GCJ-02 shifts by ~500 m
    glon, glat = (float(np.asarray(v).ravel()[0]) for v in from_wgs84(np.array([lon]), np.array([lat]), "gcj02"))
    r = client.post("/incidents", json={"lon": glon, "lat": glat, "coords": "gcj02", "category": "民政"},
                    headers=token(engine))
    assert r.status_code == 201
    got = r.json()
    assert got["grid_code"] == "G1"
    assert abs(got["lon"] - lon) < 1e-6 and abs(got["lat"] - lat) < 1e-6


# -- life cycle ------------------------------------------------------------------------------------

PATH = {"reported": [], "assigned": ["assign"], "accepted": ["assign", "accept"],
        "closed": ["assign", "accept", "close"], "rated": ["assign", "accept", "close", "rate"]}


def _do(client, h, iid, action):
    body = {"rating": 5} if action == "rate" else ({"member_id": "m1"} if action == "assign" else None)
    return client.post(f"/incidents/{iid}/{action}", json=body, headers=h)


@pytest.mark.parametrize("state", rules.STATES)
def test_every_illegal_transition_is_409(client, engine, state):
    load_areas(engine)
    insert_members(engine, ["m1"], *zip(_pt(150, 150)), [["法律"]], [True], ["G1"])
    h = token(engine)
    iid = _report(client, h)["incident_id"]
    for a in PATH[state]:
        assert _do(client, h, iid, a).status_code == 200
    legal = {("reported", "assign"), ("reported", "claim"), ("assigned", "assign"), ("assigned", "accept"), ("accepted", "close"),
             ("closed", "rate")}
    illegal = [a for a in rules.ACTIONS if (state, a) not in legal]
    assert illegal
    for action in illegal:
        r = _do(client, h, iid, action)
        assert r.status_code == 409, (state, action, r.text)
        assert f"cannot {action}" in r.json()["detail"]
        assert client.get(f"/incidents/{iid}", headers=h).json()["status"] == state
    with engine.connect() as c:  # refused actions leave no trace in the history
        n = c.execute(sa.text("SELECT count(*) FROM incident_events WHERE incident_id = :i"), {"i": iid}).scalar()
    assert n == 1 + len(PATH[state])


def test_life_cycle_by_the_responder(client, engine):
    load_areas(engine)
    insert_members(engine, ["m1", "m2", "off"], *zip(_pt(150, 150), _pt(250, 150), _pt(120, 120)),
                   [["法律"], ["法律"], ["法律"]], [True, True, False], ["G1", "G1", "G1"])
    disp = token(engine, "dispatcher", ["S1"])
    iid = _report(client, disp)["incident_id"]
    assert client.post(f"/incidents/{iid}/assign", json={"member_id": "off"}, headers=disp).status_code == 409
    # issue 11: a member unknown to the token's regions is refused like another region's member (403)
    assert client.post(f"/incidents/{iid}/assign", json={"member_id": "nobody"}, headers=disp).status_code == 403
    r = client.post(f"/incidents/{iid}/assign", headers=disp)  # no body: the nearest suitable
    assert r.status_code == 200 and r.json()["assigned_member_id"] == "m1"
    r = client.post(f"/incidents/{iid}/assign", json={"member_id": "m2"}, headers=disp)  # re-dispatch
    assert r.status_code == 200 and r.json()["assigned_member_id"] == "m2"
    m1, m2 = token(engine, "responder", ["G1"], "m1"), token(engine, "responder", ["G1"], "m2")
    assert client.post(f"/incidents/{iid}/accept", headers=m1).status_code == 403
    assert client.post(f"/incidents/{iid}/assign", json={"member_id": "m1"}, headers=m2).status_code == 403
    r = client.post(f"/incidents/{iid}/accept", headers=m2)
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    r = client.post(f"/incidents/{iid}/close", headers=m2)
    assert r.status_code == 200 and r.json()["status"] == "closed" and r.json()["light"] == "green"
    assert client.post(f"/incidents/{iid}/rate", json={"rating": 6}, headers=disp).status_code == 422
    assert client.post(f"/incidents/{iid}/rate", json={"rating": 0}, headers=disp).status_code == 422
    r = client.post(f"/incidents/{iid}/rate", json={"rating": 4}, headers=disp)
    assert r.status_code == 200 and r.json()["rating"] == 4 and r.json()["status"] == "rated"
    assert client.post("/incidents/NOPE/accept", headers=disp).status_code == 404
    # a dispatcher of another street sees nothing of it
    other = token(engine, "dispatcher", ["S2"])
    assert client.post(f"/incidents/{iid}/rate", json={"rating": 4}, headers=other).status_code == 404
    assert client.get("/incidents", params={"region": "S1"}, headers=other).status_code == 404
    assert client.get("/incidents", headers=other).json() == []


def test_list_by_region_and_light(client, engine):
    load_areas(engine)
    h = token(engine)
    now = datetime.now(timezone.utc)
    red = _report(client, h, reported_at=(now - timedelta(hours=30)).isoformat())
    yellow = _report(client, h, x=1000, reported_at=(now - timedelta(hours=21)).isoformat())  # G3
    green = _report(client, h, x=500, reported_at=(now - timedelta(hours=1)).isoformat())  # G2
    far = _report(client, h, x=2200, reported_at=(now - timedelta(hours=30)).isoformat())  # S2
    ids = lambda r: {i["incident_id"] for i in r.json()}  # noqa: E731
    assert ids(client.get("/incidents", params={"light": "red"}, headers=h)) == {red["incident_id"], far["incident_id"]}
    assert ids(client.get("/incidents", params={"region": "S1", "light": "red"}, headers=h)) == {red["incident_id"]}
    assert ids(client.get("/incidents", params={"region": "S1", "light": "yellow"}, headers=h)) == {yellow["incident_id"]}
    assert ids(client.get("/incidents", params={"region": "C1"}, headers=h)) == {red["incident_id"], green["incident_id"]}
    assert ids(client.get("/incidents", params={"region": "G2", "light": "green"}, headers=h)) == {green["incident_id"]}
    assert client.get("/incidents", params={"light": "blue"}, headers=h).status_code == 422
    got = {i["incident_id"]: i["light"] for i in client.get("/incidents", headers=h).json()}
    assert got == {red["incident_id"]: "red", yellow["incident_id"]: "yellow", green["incident_id"]: "green",
                   far["incident_id"]: "red"}


def test_me_incidents_nearest_first_and_households_in_visiting_order(client, engine):
    load_areas(engine)
    insert_members(engine, ["m1", "m2"], *zip(_pt(10, 10), _pt(20, 20)), [[], []], [True, True], ["G1", "G1"])
    disp = token(engine)
    a = _report(client, disp, x=300, y=300)["incident_id"]
    b = _report(client, disp, x=50, y=50)["incident_id"]
    c = _report(client, disp, x=350, y=50)["incident_id"]
    for iid in (a, b, c):
        assert client.post(f"/incidents/{iid}/assign", json={"member_id": "m1"}, headers=disp).status_code == 200
    me = token(engine, "responder", ["G1"], "m1")
    got = client.get("/me/incidents", headers=me).json()  # from home (10, 10)
    assert [i["incident_id"] for i in got] == [b, c, a]
    assert got[0]["distance_m"] == pytest.approx(np.hypot(40, 40), rel=1e-3)
    lon, lat = _pt(340, 300)
    got = client.get("/me/incidents", params={"lon": lon, "lat": lat}, headers=me).json()
    assert [i["incident_id"] for i in got] == [a, c, b]
    # closed incidents leave the list
    client.post(f"/incidents/{a}/accept", headers=me)
    client.post(f"/incidents/{a}/close", headers=me)
    assert [i["incident_id"] for i in client.get("/me/incidents", headers=me).json()] == [b, c]
    # someone else's view: only for dispatchers
    assert client.get("/me/incidents", params={"member_id": "m2"}, headers=me).status_code == 403
    assert client.get("/me/incidents", params={"member_id": "m1"}, headers=disp).status_code == 200
    assert client.get("/me/incidents", headers=disp).status_code == 403  # the token has no member

    # households: the current link run, in visiting order, own households unmasked
    with engine.begin() as conn:
        for i, (x, y) in enumerate([(30, 30), (60, 40), (90, 90)]):
            lon, lat = _pt(x, y)
            conn.execute(sa.text("INSERT INTO households (household_id, grid_code, name, phone, h3, geom) "
                                 "VALUES (:h, 'G1', '张三丰', '13812341234', 0, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
                         {"h": f"H{i}", "x": lon, "y": lat})
        old = conn.execute(sa.text("INSERT INTO link_runs (region, is_current) VALUES ('S1', false) RETURNING run_id")).scalar()
        cur = conn.execute(sa.text("INSERT INTO link_runs (region, is_current) VALUES ('S1', true) RETURNING run_id")).scalar()
        conn.execute(sa.text("INSERT INTO links (run_id, household_id, member_id, visit_order) VALUES "
                             "(:o, 'H0', 'm1', 1), (:c, 'H2', 'm1', 1), (:c, 'H0', 'm1', 2), (:c, 'H1', 'm2', 1)"),
                     {"o": old, "c": cur})
    hh = client.get("/me/households", headers=me).json()
    assert [h["household_id"] for h in hh] == ["H2", "H0"] and [h["visit_order"] for h in hh] == [1, 2]
    assert hh[0]["phone"] == "13812341234"
    viewer_like = client.get("/me/households", params={"member_id": "m1"}, headers=token(engine, "planner")).status_code
    assert viewer_like == 403


@pytest.mark.parametrize("body", [
    {"category": "民政", "reported_at": "9999-12-31T23:59:59"},   # a deadline past year 9999
    {"category": "民政", "reported_at": "1900-01-01T00:00:00"},
    {"category": "民政", "coords": "mars"},
    {"category": ""},
    {"category": "民政", "level": 0},
    {"category": "民政", "kind": "urgent"},
])
def test_report_refuses_bad_bodies(client, engine, body):
    r = client.post("/incidents", json={"lon": LON0, "lat": LAT0, **body}, headers=token(engine))
    assert r.status_code == 422, r.text
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM incidents")).scalar() == 0


def test_nearest_recovers_after_its_connections_are_killed(client, engine):
    """The reader pool has no pre-ping: a connection killed under it costs one 503, then it reconnects."""
    insert_members(engine, ["m1"], [LON0], [LAT0], [[]], [True])
    h = token(engine)
    q = {"lon": LON0, "lat": LAT0}
    assert client.get("/responders/nearest", params=q, headers=h).status_code == 200
    with engine.begin() as c:  # kill every other session of this database (the reader's pooled connection too)
        c.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    codes = [client.get("/responders/nearest", params=q, headers=h).status_code for _ in range(3)]
    assert set(codes) <= {200, 503} and codes[-1] == 200 and codes.count(503) <= 1
