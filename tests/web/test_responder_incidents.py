"""附近事件, 接单 (atomic claim under real concurrent requests), progress notes, close with a result note
and photo, 在岗/离岗 — through the JSON routes with login sessions and a real PostGIS."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from tests.geodata.test_visits import jpeg_with_gps
from tests.web.conftest import PASSWORD, csrf_from, login


@pytest.fixture()
def apps(web_db, db_url, tmp_path):
    """Two apps on the test database (so two claims really run side by side), a second responder M2
    in grid G1 with skill 法律, and incidents: A (no skill, 60 m from H1), B (needs 医疗), C (2 km away)."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings
    from geodata.store import incidents, users

    with web_db.begin() as c:
        c.execute(sa.text("INSERT INTO members (member_id, grid_code, name, skills, h3, geom) SELECT 'M2', 'G1', '赵六', "
                          "ARRAY['法律'], h3, geom FROM members WHERE member_id = 'M1'"))
        c.execute(sa.text("UPDATE members SET skills = ARRAY['法律'] WHERE member_id = 'M1'"))
    users.create_user(web_db, "resp2", PASSWORD, "responder", ["C1"], member_id="M2")
    for iid, lon, skill in (("A", 121.4815, None), ("B", 121.4816, "医疗"), ("C", 121.503, None)):
        incidents.create_incident(web_db, lon=lon, lat=31.2055, category="民政", incident_id=iid, required_skill=skill)
    settings = Settings(database_url=db_url, upload_dir=tmp_path / "uploads")
    with TestClient(create_app(settings), follow_redirects=False) as one, \
            TestClient(create_app(settings), follow_redirects=False) as two:
        yield one, two


def _session(client, username):
    login(client, username)
    client.headers["X-CSRF-Token"] = csrf_from(client.get("/responder").text)
    return client


def test_nearby_lists_only_unassigned_matching_incidents_within_the_radius(apps):
    one, _ = apps
    _session(one, "resp1")
    near = one.get("/me/incidents/nearby", params={"lon": 121.481, "lat": 31.205}).json()
    assert [i["incident_id"] for i in near] == ["A"]  # B needs 医疗, C lies 2 km away
    assert 40 < near[0]["distance_m"] < 100 and near[0]["light"] == "green"
    wide = one.get("/me/incidents/nearby", params={"lon": 121.481, "lat": 31.205, "radius_m": 5000}).json()
    assert [i["incident_id"] for i in wide] == ["A", "C"]
    assert [i["incident_id"] for i in one.get("/me/incidents/nearby").json()] == ["A"]  # from my grid


def test_two_members_claiming_at_once_one_wins_the_other_is_told(apps, web_db):
    one, two = apps
    _session(one, "resp1")
    _session(two, "resp2")
    barrier, results = threading.Barrier(2), {}

    def claim(name, client):
        barrier.wait()
        results[name] = client.post("/incidents/A/claim")

    threads = [threading.Thread(target=claim, args=(n, c)) for n, c in (("M1", one), ("M2", two))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results.values())
    assert codes == [200, 409]
    winner = next(n for n, r in results.items() if r.status_code == 200)
    loser = next(r for r in results.values() if r.status_code == 409)
    assert "已被其他人接单" in loser.json()["detail"]
    with web_db.connect() as c:
        inc = c.execute(sa.text("SELECT status, assigned_member_id, accepted_at IS NOT NULL AS acc FROM incidents "
                                "WHERE incident_id = 'A'")).one()
        claims = c.execute(sa.text("SELECT count(*) FROM incident_events WHERE action = 'claim'")).scalar_one()
    assert (inc.status, inc.assigned_member_id, inc.acc, claims) == ("accepted", winner, True, 1)


def test_progress_note_and_close_note_with_photo_are_stored_as_events(apps, web_db):
    one, _ = apps
    _session(one, "resp1")
    assert one.post("/incidents/A/claim").status_code == 200
    assert one.post("/me/incidents/A/notes", json={"note": "已联系物业"}).status_code == 200
    r = one.post("/incidents/A/close", json={"note": "已修好楼道灯"})
    assert r.status_code == 200 and r.json()["status"] == "closed"
    with web_db.connect() as c:
        events = c.execute(sa.text("SELECT action, detail FROM incident_events WHERE incident_id = 'A' "
                                   "ORDER BY event_id")).all()
    assert [e.action for e in events] == ["report", "claim", "note", "close"]
    assert events[2].detail["note"] == "已联系物业" and events[3].detail["note"] == "已修好楼道灯"


def test_close_with_a_photo_keeps_its_path_and_hash(apps, web_db):
    from api.auth import Principal
    from api.usecases import responder as usecase

    one, _ = apps
    me = Principal(0, "responder", ["C1"], "M1", engine=web_db)
    usecase.act_on_incident(web_db, me, "A", "claim")
    upload = one.app.state.settings.upload_dir
    closed = usecase.act_on_incident(web_db, me, "A", "close", "已处理", photo=jpeg_with_gps(), upload_dir=upload)
    assert closed["status"] == "closed"
    with web_db.connect() as c:
        detail = c.execute(sa.text("SELECT detail FROM incident_events WHERE action = 'close'")).scalar_one()
    assert (upload / detail["photos"][0]["path"]).exists() and len(detail["photos"][0]["sha256"]) == 64


def test_refused_actions_change_nothing(apps, web_db):
    one, two = apps
    _session(one, "resp1")
    _session(two, "resp2")

    def snapshot():
        with web_db.connect() as c:
            return (c.execute(sa.text("SELECT count(*) FROM incident_events")).scalar_one(),
                    c.execute(sa.text("SELECT status, assigned_member_id FROM incidents ORDER BY incident_id")).all())

    assert one.post("/incidents/A/claim").status_code == 200
    before = snapshot()
    assert two.post("/incidents/A/claim").status_code == 409            # taken
    assert two.post("/me/incidents/A/notes", json={"note": "x"}).status_code == 409  # in my region, not mine
    assert one.post("/incidents/NOPE/claim").status_code == 404
    assert one.post("/me/incidents/A/notes", json={"note": ""}).status_code == 422
    assert snapshot() == before


def test_on_off_duty_toggle_sets_available_and_is_audited(apps, web_db):
    one, _ = apps
    _session(one, "resp1")
    assert one.post("/me/available", json={"available": False}).json()["available"] is False
    with web_db.connect() as c:
        assert c.execute(sa.text("SELECT available FROM members WHERE member_id = 'M1'")).scalar_one() is False
        assert c.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'availability'")).scalar_one() == 1


# -- the /responder page's incident section (forms with CSRF, redirects with a notice) ------------------------

def _page_session(client, username):
    login(client, username)
    return csrf_from(client.get("/responder").text)


def test_page_lists_nearby_with_distance_light_and_time_left_and_claims_one(apps, web_db):
    one, two = apps
    token = _page_session(one, "resp1")
    page = one.get("/responder").text
    assert "附近事件（1）" in page and 'data-incident="A"' in page and "绿灯 · 正常" in page and "剩 23 小时" in page
    r = one.post("/responder/incidents/A/claim", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"].startswith("/responder?done=claim&incident=A")
    after = one.get(r.headers["location"]).text
    assert "接单成功" in after and "我的事件（1）" in after and "附近事件（0）" in after
    # the second responder's page still shows A (stale) and loses the race: told, nothing changes
    token2 = _page_session(two, "resp2")
    with web_db.connect() as c:
        events = c.execute(sa.text("SELECT count(*) FROM incident_events")).scalar_one()
    lost = two.post("/responder/incidents/A/claim", data={"csrf_token": token2})
    assert lost.headers["location"].startswith("/responder?done=taken")
    assert "已被其他人接单" in two.get(lost.headers["location"]).text
    with web_db.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM incident_events")).scalar_one() == events
        assert c.execute(sa.text("SELECT assigned_member_id FROM incidents WHERE incident_id = 'A'")).scalar_one() == "M1"


def test_page_forms_need_csrf_and_refuse_without_changing_anything(apps, web_db):
    one, _ = apps
    token = _page_session(one, "resp1")

    def snapshot():
        with web_db.connect() as c:
            return (c.execute(sa.text("SELECT count(*) FROM incident_events")).scalar_one(),
                    c.execute(sa.text("SELECT status, assigned_member_id FROM incidents ORDER BY incident_id")).all(),
                    c.execute(sa.text("SELECT available FROM members ORDER BY member_id")).all())

    before = snapshot()
    assert one.post("/responder/incidents/A/claim", data={}).status_code == 403          # no CSRF token
    assert one.post("/responder/incidents/NOPE/claim", data={"csrf_token": token}).status_code == 404
    assert one.post("/responder/incidents/A/close", data={"csrf_token": token, "note": "x"}).status_code == 409
    assert one.post("/responder/duty", data={"csrf_token": token, "available": "maybe"}).status_code == 400
    assert snapshot() == before


def test_page_accept_note_close_with_photo_and_duty_toggle(apps, web_db):
    from geodata.store import incidents

    one, _ = apps
    token = _page_session(one, "resp1")
    incidents.transition(web_db, "A", "assign", member_id="M1")
    page = one.get("/responder").text
    assert "已派给您，待接受" in page and "/responder/incidents/A/accept" in page
    assert one.post("/responder/incidents/A/accept", data={"csrf_token": token}).status_code == 303
    assert one.post("/responder/incidents/A/note", data={"csrf_token": token, "note": "已到现场"}).status_code == 303
    r = one.post("/responder/incidents/A/close", data={"csrf_token": token, "note": "已修好"},
                 files={"photo": ("p.jpg", jpeg_with_gps(), "image/jpeg")})
    assert r.status_code == 303 and "done=close" in r.headers["location"]
    with web_db.connect() as c:
        events = c.execute(sa.text("SELECT action, detail FROM incident_events WHERE incident_id = 'A' "
                                   "ORDER BY event_id")).all()
    assert [e.action for e in events] == ["report", "assign", "accept", "note", "close"]
    assert events[-1].detail["note"] == "已修好" and len(events[-1].detail["photos"]) == 1
    assert one.post("/responder/duty", data={"csrf_token": token, "available": "0"}).status_code == 303
    assert "当前状态：<strong>离岗</strong>" in one.get("/responder").text
    with web_db.connect() as c:
        assert c.execute(sa.text("SELECT available FROM members WHERE member_id = 'M1'")).scalar_one() is False


def test_page_and_json_show_both_clocks_response_on_time_completion_late(apps, web_db):
    from datetime import UTC, datetime, timedelta

    from geodata.store import incidents

    one, _ = apps
    _page_session(one, "resp1")
    reported = datetime.now(UTC) - timedelta(hours=30)
    incidents.create_incident(web_db, lon=121.4815, lat=31.2055, category="民政", incident_id="OLD", reported_at=reported)
    incidents.transition(web_db, "OLD", "claim", acting_member="M1", at=reported + timedelta(hours=1))
    page = one.get("/responder").text
    card = page[page.index('data-incident="OLD"'):]
    card = card[:card.index("</li>")]
    assert "接单 绿灯 · 正常" in card and "办结 红灯 · 超时" in card and "办结已超时 6 小时" in card
    shown = one.get("/incidents/OLD").json()
    assert (shown["respond_light"], shown["complete_light"], shown["light"]) == ("green", "red", "red")
    assert shown["respond_due_at"] is not None


def test_reminders_appear_in_the_notice_list_of_the_holder_only(apps, web_db):
    from datetime import UTC, datetime, timedelta

    from api.jobs.reminders import run_reminders
    from geodata.store import incidents

    one, two = apps
    _page_session(one, "resp1")
    _page_session(two, "resp2")
    reported = datetime.now(UTC) - timedelta(hours=20)
    incidents.create_incident(web_db, lon=121.4815, lat=31.2055, category="民政", incident_id="LATE", reported_at=reported)
    incidents.transition(web_db, "LATE", "claim", acting_member="M1", at=reported + timedelta(hours=1))
    assert run_reminders(web_db)["notices"] == 2
    assert "提醒（1）" in one.get("/responder").text and "事件 LATE（民政）办结即将超时（黄灯）" in one.get("/responder").text
    assert "事件 LATE" not in two.get("/responder").text
