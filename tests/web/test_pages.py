"""Login sessions, CSRF, throttling, audit, role/region enforcement and escaping of the web pages
(through FastAPI's TestClient against the real PostGIS test database)."""

from __future__ import annotations

import sqlalchemy as sa

from api.auth import SESSION_COOKIE
from geodata.store import users
from tests.web.conftest import PASSWORD, XSS_NAME, csrf_from, login


def _count(engine, table: str) -> int:
    with engine.connect() as c:
        return c.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def _audit_actions(engine) -> list[str]:
    with engine.connect() as c:
        return [r[0] for r in c.execute(sa.text("SELECT action FROM audit_log ORDER BY audit_id"))]


def test_login_sets_hardened_cookie_and_sends_role_home(client, web_db):
    r = login(client, "leader1")
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert PASSWORD not in cookie
    assert client.get("/").headers["location"] == "/leader"
    page = client.get("/leader")
    assert page.status_code == 200
    assert "外滩街道" in page.text and "领导" in page.text and "北京时间" in page.text
    # figures of the region: 2 grids, 3 households, 1 member, 2 of 3 linked
    assert "66.7%" in page.text
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["referrer-policy"]


def test_only_a_hash_of_the_session_id_is_stored_and_each_login_rotates_it(client, web_db):
    login(client, "leader1")
    first = client.cookies[SESSION_COOKIE]
    login(client, "leader1")
    second = client.cookies[SESSION_COOKIE]
    assert first != second
    with web_db.connect() as c:
        hashes = {r[0] for r in c.execute(sa.text("SELECT session_hash FROM login_sessions"))}
    assert hashes == {users.hash_session(second)}  # the old session ended at the new login
    assert first not in str(hashes) and second not in str(hashes)


def test_each_role_lands_on_its_home(client, web_db):
    for username, home in (("planner1", "/planner"), ("resp1", "/responder")):
        client.cookies.clear()
        login(client, username)
        assert client.get("/").headers["location"] == home
        assert client.get(home).status_code == 200
    client.cookies.clear()
    login(client, "admin1")
    pick = client.get("/")
    assert pick.status_code == 200 and 'href="/leader"' in pick.text and 'href="/planner"' in pick.text


def test_responder_cannot_open_leader_or_planner_pages(client, web_db):
    login(client, "resp1")
    for page in ("/leader", "/planner"):
        r = client.get(page)
        assert r.status_code == 403 and "不能打开" in r.text


def test_wrong_password_and_unknown_user_are_refused_and_audited(client, web_db):
    assert login(client, "leader1", "wrong-password-1").status_code == 401
    assert login(client, "nobody", "wrong-password-1").status_code == 401
    assert SESSION_COOKIE not in client.cookies
    assert _audit_actions(web_db) == ["login_failed", "login_failed"]
    with web_db.connect() as c:
        detail = str(c.execute(sa.text("SELECT array_agg(detail::text) FROM audit_log")).scalar())
    assert "wrong-password-1" not in detail


def test_five_wrong_passwords_then_429_even_with_the_right_one(client, web_db):
    for _ in range(5):
        assert login(client, "leader1", "wrong-password-1").status_code == 401
    r = login(client, "leader1")
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert _count(web_db, "login_sessions") == 0
    assert "login_throttled" in _audit_actions(web_db)


def test_login_logout_are_audited_and_logout_needs_csrf(client, web_db):
    login(client, "leader1")
    page = client.get("/leader")
    assert client.post("/logout").status_code == 403          # no CSRF token
    assert _count(web_db, "login_sessions") == 1               # refused: nothing changed
    r = client.post("/logout", data={"csrf_token": csrf_from(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert _count(web_db, "login_sessions") == 0
    # (the leader page itself audits the member names it shows: pii_read)
    assert [a for a in _audit_actions(web_db) if a != "pii_read"] == ["login", "logout"]
    assert client.get("/leader").headers["location"] == "/login"


def test_csrf_header_accepted_and_required_for_cookie_json_posts(client, web_db):
    login(client, "planner1")
    page = client.get("/planner")
    before = _count(web_db, "link_runs")
    assert client.post("/links/recompute", json={"region": "C1"}).status_code == 403
    assert _count(web_db, "link_runs") == before
    r = client.post("/links/recompute", json={"region": "C1"}, headers={"X-CSRF-Token": csrf_from(page.text)})
    assert r.status_code == 200, r.text


def test_login_form_needs_its_csrf_token(client, web_db):
    client.get("/login")
    r = client.post("/login", data={"username": "leader1", "password": PASSWORD, "csrf_token": "forged"})
    assert r.status_code == 403 and _count(web_db, "login_sessions") == 0


def test_tampered_expired_or_disabled_sessions_are_refused(client, web_db):
    login(client, "leader1")
    good = client.cookies[SESSION_COOKIE]
    client.cookies.set(SESSION_COOKIE, good[:-2] + ("AA" if not good.endswith("AA") else "BB"))
    assert client.get("/leader").headers["location"] == "/login"
    assert client.get("/members/M1/households").status_code == 401  # JSON routes: the same cookie is no credential
    client.cookies.set(SESSION_COOKIE, good)
    assert client.get("/leader").status_code == 200
    with web_db.begin() as c:
        c.execute(sa.text("UPDATE login_sessions SET expires_at = now() - interval '1 second'"))
    assert client.get("/leader").headers["location"] == "/login"
    login(client, "leader1")
    assert users.disable_user(web_db, "leader1")
    assert client.get("/leader").headers["location"] == "/login"
    assert login(client, "leader1").status_code == 401


def test_session_gives_json_routes_the_same_principal_as_a_token(client, web_db):
    login(client, "leader1")
    assert client.get("/members/M1/households").status_code == 200
    client.cookies.clear()
    login(client, "leader2")  # street S2: M1 is not theirs
    assert client.get("/members/M1/households").status_code == 404


def test_xss_name_is_escaped_and_pii_read_audited(client, web_db):
    login(client, "resp1")
    page = client.get("/responder")
    assert page.status_code == 200
    assert XSS_NAME not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "张三" in page.text  # own households unmasked for their responder
    assert "pii_read" in _audit_actions(web_db)


def test_unknown_and_foreign_jobs_and_regions_answer_the_same_404(client, web_db):
    login(client, "leader2")
    page = client.get("/leader")
    token = csrf_from(page.text)
    missing = client.get("/jobs/999999")
    assert missing.status_code == 404
    foreign = client.post("/jobs/recompute", data={"region": "C1", "csrf_token": token})
    unknown = client.post("/jobs/recompute", data={"region": "NOPE", "csrf_token": token})
    assert foreign.status_code == unknown.status_code == 404
    assert _count(web_db, "job_progress") == 0


def test_static_assets_are_served_locally(client):
    assert client.get("/static/css/app.css").status_code == 200
    assert client.get("/static/js/app.js").status_code == 200


def test_each_user_picks_a_base_map_for_their_browser(client, web_db):
    """Issue 13: one base-map setting, switchable per user; the CSP follows the choice."""
    login(client, "leader1")
    page = client.get("/leader")
    assert 'data-basemap="none"' in page.text and "openstreetmap" not in page.headers["content-security-policy"]
    token = csrf_from(page.text)
    assert client.post("/prefs/basemap", data={"basemap": "osm", "back": "/leader"}).status_code == 403  # no CSRF
    bad = client.post("/prefs/basemap", data={"csrf_token": token, "basemap": "google", "back": "/leader"})
    assert bad.status_code == 422 and "gridmap_basemap" not in bad.headers.get("set-cookie", "")
    # Tianditu needs a deployment key: without one it is not offered and not accepted
    assert client.post("/prefs/basemap", data={"csrf_token": token, "basemap": "tianditu"}).status_code == 422
    r = client.post("/prefs/basemap", data={"csrf_token": token, "basemap": "osm", "back": "https://evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == "/"  # never an open redirect
    page = client.get("/leader")
    assert 'data-basemap="osm"' in page.text and "tile.openstreetmap.org" in page.headers["content-security-policy"]
    assert '<option value="osm" selected>' in page.text and "tianditu" not in page.text.split("<main", 1)[0]


def test_a_page_request_looks_its_session_up_once(client, web_db, monkeypatch):
    """The request gate (api.guards) finds the session before the body is read and hands the account on:
    the page's own check does not ask the database again (it did: two look-ups per page)."""
    login(client, "leader1")
    calls = []
    real = users.find_session
    monkeypatch.setattr(users, "find_session", lambda engine, sid: calls.append(sid) or real(engine, sid))
    assert client.get("/leader").status_code == 200
    assert len(calls) == 1
    calls.clear()
    assert client.get("/members/M1/households").status_code == 200  # a JSON route behind the same cookie
    assert len(calls) == 1
    users.end_session(web_db, client.cookies[SESSION_COOKIE])  # logged out elsewhere: the next request is refused
    calls.clear()
    assert client.get("/leader").headers["location"] == "/login"
