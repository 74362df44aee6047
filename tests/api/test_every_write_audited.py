"""Every write is audited — proved route by route.

The routes are read from the app itself (``create_app(...).routes``, the JSON routers and the pages of
``api/web`` alike): every route with an unsafe method (POST/PUT/PATCH/DELETE) needs a case in
:data:`CASES`, or its test fails saying so — a new write route cannot slip through. A case sets up what
its request needs (seeded region of ``tests/web/conftest.py``, incidents, drafts …), sends one request
that is accepted, and says what the new ``audit_log`` row must hold: the action and the written object's
id. No row may carry the personal data of the seed or of the request (names, phones, ID numbers, the
phone's hash). A route that answers a POST but writes nothing (a preview, a cookie) is declared with
``action=None`` and then no table of the schema may change at all.

Real PostGIS, real app (TestClient), no stubs. The last tests force the audit row to fail and check that
the write went with it (tables, and a ticket's photo files).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from tests.web.conftest import ACCOUNTS, PASSWORD, XSS_NAME, _h3, csrf_from, login, seed_region

pytestmark = pytest.mark.db

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
#: Personal data of the seeded region (tests/web/conftest.py): never in an audit row.
SEED_PII = (XSS_NAME, "张三", "李四", "王五", "13812341234")
#: A phone a request sends (a resident's call-back number).
PHONE = "13957006688"


def unsafe_routes() -> list[str]:
    """``"METHOD /path"`` of every route of the app with an unsafe method, included routers unwrapped."""
    from api.app import create_app
    from api.settings import Settings

    app = create_app(Settings(database_url="postgresql://127.0.0.1:5432/never_connected"))

    def walk(routes, prefix=""):
        for r in routes:
            inner = getattr(r, "original_router", None)
            if inner is not None:  # an included router (api.app moves some to the front)
                yield from walk(inner.routes, prefix)
            elif getattr(r, "methods", None):
                yield prefix + r.path, r.methods
            elif getattr(r, "routes", None):  # a mounted sub-application
                yield from walk(r.routes, prefix + r.path)

    return sorted({f"{m} {path}" for path, methods in walk(app.routes) for m in set(methods) & UNSAFE})


# -- the world a case runs in -------------------------------------------------------------------------

@dataclass
class Done:
    """What a case's request did: the response and the audit row it must have left (``action`` None:
    nothing may change), the ids that row must name and extra personal data it must not hold."""

    response: object
    action: str | None
    ids: tuple[str, ...] = ()
    pii: tuple[str, ...] = ()


class World:
    """The seeded region with one account per role, an app on the test database and helpers to set up
    incidents, tokens, logins, drafts."""

    def __init__(self, engine, client, upload_dir):
        self.engine, self.client, self.upload_dir = engine, client, upload_dir

    def bearer(self, role: str, regions: list[str], member_id: str | None = None) -> dict:
        from geodata.store import auth

        return {"Authorization": f"Bearer {auth.create_token(self.engine, role, regions, member_id)[1]}"}

    def token_text(self, role: str, regions: list[str]) -> str:
        from geodata.store import auth

        return auth.create_token(self.engine, role, regions)[1]

    def page(self, username: str, path: str = "/") -> str:
        """Log ``username`` in; the CSRF token of the session (read from ``path``'s form)."""
        assert login(self.client, username).status_code == 303
        token = csrf_from(self.client.get(path, follow_redirects=True).text)
        self.client.headers["X-CSRF-Token"] = token
        return token

    def incident(self, iid: str = "A", upto: str = "reported", member: str = "M1") -> str:
        """Incident ``iid`` in grid G1 moved (through the store, unaudited setup) up to ``upto``."""
        from geodata.store import incidents

        incidents.create_incident(self.engine, lon=121.4815, lat=31.2055, category="民政", incident_id=iid)
        steps = {"reported": [], "assigned": ["assign"], "accepted": ["assign", "accept"],
                 "closed": ["assign", "accept", "close"]}[upto]
        for step in steps:
            incidents.transition(self.engine, iid, step, member_id=member if step == "assign" else None)
        return iid

    def ticket(self, closed: bool = True) -> dict:
        """A resident's ticket (with a call-back phone), closed by M1 when ``closed``."""
        from geodata.store import incidents, tickets

        made = tickets.create_ticket(self.engine, lon=121.4815, lat=31.2055, category="民政", description="路灯坏了",
                                     phone=PHONE, upload_dir=self.upload_dir)
        if closed:
            for step in ("assign", "accept", "close"):
                incidents.transition(self.engine, made["incident_id"], step,
                                     member_id="M1" if step == "assign" else None)
        return made

    def draft(self) -> int:
        """Community C3 (tests/web/test_planner_redraw.py) and a computed redraw draft of it."""
        from api.usecases import drafts
        from tests.web.test_planner_redraw import seed_c3

        seed_c3(self.engine)
        return drafts.create_draft(self.engine, "C3", drafts.DraftControls(locked=("K1", "K2")), name="方案一",
                                   created_by="planner1")

    def draft_edit(self, draft_id: int) -> dict:
        """A valid edit of the draft: a boundary cell moved into a free grid."""
        from api.usecases import drafts
        from tests.web.test_planner_redraw import boundary_cell

        draft = drafts.open_draft(self.engine, draft_id, None)
        into = next(c for c in draft["grids"]["grid_code"] if c.startswith("C3"))
        return {"to_grid": into, "cells": [boundary_cell(self.engine, draft, into)]}

    def reminders(self) -> None:
        """Incident R held by M1, with a reminder run 20 h after it was reported (notices for M1 and S1)."""
        from datetime import timedelta

        from api.jobs.reminders import run_reminders
        from geodata.store import incidents
        from tests.web.test_notices import T0

        incidents.create_incident(self.engine, lon=121.4815, lat=31.2055, category="民政", incident_id="R",
                                  reported_at=T0)
        incidents.transition(self.engine, "R", "claim", acting_member="M1", at=T0 + timedelta(hours=1))
        run_reminders(self.engine, T0 + timedelta(hours=20))

    def scalar(self, sql: str, **params):
        with self.engine.connect() as c:
            return c.execute(sa.text(sql), params).scalar_one()


def _location_id(response, pattern: str) -> str:
    found = re.search(pattern, response.headers["location"])
    assert found, response.headers.get("location")
    return found.group(1)


def _grids_fc(w: World) -> dict:
    """C1's stored grids as a redraw result (same polygons, kept codes)."""
    with w.engine.connect() as c:
        rows = c.execute(sa.text("SELECT grid_code, community_code, kind, ST_AsGeoJSON(geom) AS g FROM grids "
                                 "WHERE community_code = 'C1' ORDER BY grid_code")).all()
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": json.loads(r.g),
         "properties": {"grid_code": r.grid_code, "community_code": r.community_code, "kind": r.kind}} for r in rows]}


def _versions(w: World, community: str) -> dict[str, int]:
    with w.engine.connect() as c:
        return dict(c.execute(sa.text("SELECT grid_code, version FROM grids WHERE community_code = :c"),
                              {"c": community}).all())


# -- one case per write route: set up, then return the request to send ------------------------------

Case = Callable[[World], Callable[[], Done]]


def _staff_report(w: World):
    hdr = w.bearer("dispatcher", ["S1"])

    def act():
        r = w.client.post("/incidents", json={"lon": 121.4815, "lat": 31.2055, "category": "民政"}, headers=hdr)
        return Done(r, "incident_report", (r.json()["incident_id"],))
    return act


def _json_step(step: str, upto: str, role: str, body: dict | None = None) -> Case:
    def case(w: World):
        iid = w.incident("A", upto)
        hdr = w.bearer(role, ["C1"], "M1" if role == "responder" else None)
        return lambda: Done(w.client.post(f"/incidents/{iid}/{step}", json=body, headers=hdr), f"incident_{step}", (iid,))
    return case


def _json_visit(w: World):
    hdr = w.bearer("responder", ["C1"], "M1")
    return lambda: Done(w.client.post("/me/visits", data={"household_id": "H1", "kind": "door", "note": "上门看望"},
                                      headers=hdr), "visit_write", ("H1",))


def _json_note(w: World):
    w.incident("A", "accepted")
    hdr = w.bearer("responder", ["C1"], "M1")
    return lambda: Done(w.client.post("/me/incidents/A/notes", json={"note": "已到现场"}, headers=hdr),
                        "incident_note", ("A",))


def _json_duty(w: World):
    hdr = w.bearer("responder", ["C1"], "M1")
    return lambda: Done(w.client.post("/me/available", json={"available": False}, headers=hdr), "availability", ("M1",))


def _recompute(w: World):
    hdr = w.bearer("leader", ["S1"])

    def act():
        r = w.client.post("/links/recompute", json={"region": "C1"}, headers=hdr)
        return Done(r, "links_recompute", (str(r.json()["run_id"]),))
    return act


def _grid_edit_body() -> dict:
    import h3

    return {"to_grid": "G2", "cells": [h3.int_to_str(_h3(31.205, 121.483))], "allow_out_of_band": True}


def _grid_preview(w: World):
    hdr = w.bearer("planner", ["C1"])
    return lambda: Done(w.client.post("/grids/preview", json=_grid_edit_body(), headers=hdr), None)


def _grid_commit(w: World):
    hdr = w.bearer("planner", ["C1"])
    versions = w.client.post("/grids/preview", json=_grid_edit_body(), headers=hdr).json()["versions"]
    return lambda: Done(w.client.post("/grids/commit", json={**_grid_edit_body(), "versions": versions}, headers=hdr),
                        "grid_edit", ("G1", "G2"))


def _redraw_commit(w: World):
    hdr = w.bearer("planner", ["C1"])
    body = {"grids": _grids_fc(w), "versions": _versions(w, "C1"), "allow_out_of_band": True}
    return lambda: Done(w.client.post("/grids/redraw/commit", json=body, headers=hdr), "grid_redraw", ("G1", "G2"))


def _open311(w: World):
    key = w.token_text("dispatcher", ["S1"])

    def act():
        r = w.client.post("/open311/v2/requests.json", data={
            "api_key": key, "service_code": "001", "lat": "31.2055", "long": "121.4815", "description": "井盖缺失",
            "phone": PHONE, "email": "resident@example.com", "address_string": "中山路1号"})
        assert r.status_code == 201, r.text
        ticket = r.json()[0]["service_request_id"]
        iid = w.scalar("SELECT incident_id FROM incidents WHERE ticket = :t", t=ticket)
        phone_hash = w.scalar("SELECT reporter_phone_hash FROM incidents WHERE ticket = :t", t=ticket)
        return Done(r, "ticket_report", (iid,), (PHONE, phone_hash, "resident@example.com", "中山路1号"))
    return act


def _draft_json(step: str) -> Case:
    def case(w: World):
        d = w.draft()
        w.page("planner1", f"/planner/drafts/{d}")
        body = w.draft_edit(d)
        if step in ("undo", "redo"):
            assert w.client.post(f"/drafts/{d}/edits", json=body).status_code == 200
        if step == "redo":
            assert w.client.post(f"/drafts/{d}/undo").status_code == 200
        path = f"/drafts/{d}/{'edits' if step == 'edit' else step}"
        if step == "preview":
            return lambda: Done(w.client.post(path, json=body), None)
        return lambda: Done(w.client.post(path, json=body if step == "edit" else None), f"draft_{step}", (str(d),))
    return case


def _login(w: World):
    page = w.client.get("/login")
    user_id = w.scalar("SELECT user_id FROM users WHERE username = 'leader1'")
    return lambda: Done(w.client.post("/login", data={"username": "leader1", "password": PASSWORD,
                                                      "csrf_token": csrf_from(page.text)}), "login", (str(user_id),))


def _logout(w: World):
    token = w.page("leader1", "/leader")
    user_id = w.scalar("SELECT user_id FROM users WHERE username = 'leader1'")
    return lambda: Done(w.client.post("/logout", data={"csrf_token": token}), "logout", (str(user_id),))


def _basemap(w: World):
    token = w.page("leader1", "/leader")
    return lambda: Done(w.client.post("/prefs/basemap", data={"csrf_token": token, "basemap": "none", "back": "/leader"}),
                        None)


def _job_recompute(w: World):
    token = w.page("leader1", "/leader")

    def act():
        r = w.client.post("/jobs/recompute", data={"csrf_token": token, "region": "C1"})
        return Done(r, "job_queued", (_location_id(r, r"/jobs/(\d+)"),))
    return act


def _report(w: World):
    def act():
        r = w.client.post("/report", data={"category": "设施报修", "description": "楼道灯坏了", "lon": "121.4815",
                                           "lat": "31.2055", "address": "中山路1号", "phone": PHONE})
        assert r.status_code == 201, r.text
        ticket = re.search(r"/report/(\d+)\?k=", r.text).group(1)
        iid = w.scalar("SELECT incident_id FROM incidents WHERE ticket = :t", t=ticket)
        phone_hash = w.scalar("SELECT reporter_phone_hash FROM incidents WHERE ticket = :t", t=ticket)
        return Done(r, "ticket_report", (iid,), (PHONE, phone_hash, "中山路1号", "楼道灯坏了"))
    return act


def _follow(w: World):
    made = w.ticket(closed=False)
    return lambda: Done(w.client.post(f"/report/{made['ticket']}", data={"code": PHONE[-4:]}), None)


def _rate(w: World):
    made = w.ticket(closed=True)
    phone_hash = w.scalar("SELECT reporter_phone_hash FROM incidents WHERE ticket = :t", t=made["ticket"])
    return lambda: Done(w.client.post(f"/report/{made['ticket']}/rate",
                                      data={"rating": "2", "comment": "张三说太慢", "k": made["follow_key"]}),
                        "ticket_rate", (made["incident_id"],), (PHONE, phone_hash, "张三说太慢", made["follow_key"]))


def _page_visit(w: World):
    token = w.page("resp1", "/responder")
    return lambda: Done(w.client.post("/responder/visits", data={"csrf_token": token, "household_id": "H1",
                                                                 "kind": "door"}), "visit_write", ("H1",))


def _page_step(step: str, upto: str) -> Case:
    def case(w: World):
        iid = w.incident("A", upto)
        token = w.page("resp1", "/responder")
        data = {"csrf_token": token, **({"note": "已处理好"} if step in ("note", "close") else {})}
        return lambda: Done(w.client.post(f"/responder/incidents/{iid}/{step}", data=data), f"incident_{step}", (iid,))
    return case


def _page_duty(w: World):
    token = w.page("resp1", "/responder")
    return lambda: Done(w.client.post("/responder/duty", data={"csrf_token": token, "available": "0"}),
                        "availability", ("M1",))


ROSTER = "household_id,lon,lat,grid_code,name,phone\nH7,121.4851,31.2051,G1,赵七,13700007777\n"


def _upload(w: World):
    token = w.page("planner1", "/planner/upload")

    def act():
        r = w.client.post("/planner/upload", data={"csrf_token": token, "layer": "households"},
                          files={"file": ("赵七家.csv", ROSTER.encode(), "text/csv")})
        return Done(r, "upload", (_location_id(r, r"/planner/upload/([A-Za-z0-9_-]+)\?"),), ("赵七", "13700007777"))
    return act


def _import(w: World):
    token = w.page("planner1", "/planner/upload")
    r = w.client.post("/planner/upload", data={"csrf_token": token, "layer": "households"},
                      files={"file": ("roster.csv", ROSTER.encode(), "text/csv")})
    upload_id = _location_id(r, r"/planner/upload/([A-Za-z0-9_-]+)\?")
    return lambda: Done(w.client.post(f"/planner/upload/{upload_id}/import",
                                      data={"csrf_token": token, "layer": "households"}),
                        "import", ("H7",), ("赵七", "13700007777"))


def _redraw_job(w: World):
    token = w.page("planner1", "/planner/redraw")

    def act():
        r = w.client.post("/planner/redraw", data={"csrf_token": token, "community": "C1"})
        return Done(r, "job_queued", (_location_id(r, r"/planner/redraw/jobs/(\d+)"),))
    return act


def _draft_commit(w: World):
    d = w.draft()
    token = w.page("planner1", f"/planner/drafts/{d}")
    return lambda: Done(w.client.post(f"/planner/drafts/{d}/commit", data={"csrf_token": token}), "grid_redraw",
                        ("K1", "K2", "K3"))


def _notice_read(w: World):
    w.reminders()
    nid = w.scalar("SELECT notice_id FROM notices WHERE region_code IS NOT NULL ORDER BY notice_id LIMIT 1")
    token = w.page("disp1", "/notices")
    return lambda: Done(w.client.post(f"/notices/{nid}/read", data={"csrf_token": token}), "notice_read", (str(nid),))


def _my_notice_read(w: World):
    w.reminders()
    nid = w.scalar("SELECT notice_id FROM notices WHERE member_id = 'M1'")
    token = w.page("resp1", "/responder")
    return lambda: Done(w.client.post(f"/responder/notices/{nid}/read", data={"csrf_token": token}), "notice_read",
                        (str(nid),))


def _desk_assign(w: World):
    iid, token = w.incident("A"), w.page("disp1", "/dispatch")  # 调度台 派单 (api/web/dispatch_desk.py)
    return lambda: Done(w.client.post(f"/dispatch/{iid}/assign", data={"csrf_token": token, "member_id": "M1",
                                                                       "seen": "reported:"}), "incident_assign", (iid,))


#: "METHOD /path" → the case proving its accepted request is audited (or, action None, writes nothing).
CASES: dict[str, Case] = {
    "POST /incidents": _staff_report,
    "POST /incidents/{incident_id}/assign": _json_step("assign", "reported", "dispatcher", {"member_id": "M1"}),
    "POST /incidents/{incident_id}/accept": _json_step("accept", "assigned", "responder"),
    "POST /incidents/{incident_id}/close": _json_step("close", "accepted", "responder", {"note": "已修好"}),
    "POST /incidents/{incident_id}/rate": _json_step("rate", "closed", "dispatcher", {"rating": 5}),
    "POST /incidents/{incident_id}/claim": _json_step("claim", "reported", "responder"),
    "POST /me/visits": _json_visit,
    "POST /me/incidents/{incident_id}/notes": _json_note,
    "POST /me/available": _json_duty,
    "POST /links/recompute": _recompute,
    "POST /grids/preview": _grid_preview,
    "POST /grids/commit": _grid_commit,
    "POST /grids/redraw/commit": _redraw_commit,
    "POST /open311/v2/requests.{fmt}": _open311,
    "POST /drafts/{draft_id}/preview": _draft_json("preview"),
    "POST /drafts/{draft_id}/edits": _draft_json("edit"),
    "POST /drafts/{draft_id}/undo": _draft_json("undo"),
    "POST /drafts/{draft_id}/redo": _draft_json("redo"),
    "POST /login": _login,
    "POST /logout": _logout,
    "POST /prefs/basemap": _basemap,
    "POST /jobs/recompute": _job_recompute,
    "POST /report": _report,
    "POST /report/{ticket}": _follow,
    "POST /report/{ticket}/rate": _rate,
    "POST /responder/visits": _page_visit,
    "POST /responder/incidents/{incident_id}/claim": _page_step("claim", "reported"),
    "POST /responder/incidents/{incident_id}/accept": _page_step("accept", "assigned"),
    "POST /responder/incidents/{incident_id}/note": _page_step("note", "accepted"),
    "POST /responder/incidents/{incident_id}/close": _page_step("close", "accepted"),
    "POST /responder/duty": _page_duty,
    "POST /responder/notices/{notice_id}/read": _my_notice_read,
    "POST /planner/upload": _upload,
    "POST /planner/upload/{upload_id}/import": _import,
    "POST /planner/redraw": _redraw_job,
    "POST /planner/drafts/{draft_id}/commit": _draft_commit,
    "POST /notices/{notice_id}/read": _notice_read,
    "POST /dispatch/{incident_id}/assign": _desk_assign,
}


# -- what every case must show ----------------------------------------------------------------------

def table_digests(engine) -> dict[str, str]:
    """An md5 of every table's rows (parents only: partitions are read through them)."""
    with engine.connect() as c:
        names = [r[0] for r in c.execute(sa.text(
            "SELECT k.relname FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace "
            "WHERE n.nspname = 'public' AND k.relkind IN ('r', 'p') AND NOT k.relispartition "
            "AND k.relname NOT IN ('spatial_ref_sys') ORDER BY k.relname"))]
        return {t: c.execute(sa.text(f'SELECT md5(coalesce(string_agg(x::text, \'|\' ORDER BY x::text), \'\')) '
                                     f'FROM "{t}" x')).scalar_one() for t in names}


def audit_rows_after(engine, last_id: int) -> list[dict]:
    with engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(sa.text(
            "SELECT audit_id, token_id, role, member_id, action, what, ids, detail FROM audit_log "
            "WHERE audit_id > :a ORDER BY audit_id"), {"a": last_id})]


def _pii_in_db(engine) -> set[str]:
    """Every name, phone and ID number the store holds now, and the phones' hashes."""
    with engine.connect() as c:
        found = set()
        for sql in ("SELECT name, phone, id_number FROM households", "SELECT name, phone, NULL FROM members",
                    "SELECT reporter_phone_hash, follow_hash, follow_key_hash FROM incidents"):
            for row in c.execute(sa.text(sql)):
                found.update(str(v) for v in row if v)
    return found


@pytest.fixture()
def world(engine, db_url, tmp_path):
    """The seeded region of the page tests (tests/web/conftest.py) with its accounts, and an app on it."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings
    from geodata.store import users

    seed_region(engine)
    for name, (role, regions, member) in ACCOUNTS.items():
        users.create_user(engine, name, PASSWORD, role, regions, member_id=member)

    settings = Settings(database_url=db_url, upload_dir=tmp_path / "uploads")
    with TestClient(create_app(settings), follow_redirects=False) as client:
        yield World(engine, client, tmp_path / "uploads")


ROUTES = unsafe_routes()


def test_the_app_has_write_routes_and_every_case_names_one():
    assert len(ROUTES) >= 30, ROUTES  # the walk found the pages and the included routers
    stale = sorted(set(CASES) - set(ROUTES))
    assert not stale, f"cases for routes the app no longer has (remove them): {stale}"


@pytest.mark.parametrize("route", ROUTES)
def test_an_accepted_write_leaves_its_audit_row_without_personal_data(route, world):
    case = CASES.get(route)
    if case is None:
        pytest.fail(f"{route} has no case: add one to CASES in tests/api/test_every_write_audited.py — an accepted "
                    "request and the audit_log row it must leave (action, object id), or action=None for a route "
                    "that writes nothing — and audit the write in its use case (api/usecases, "
                    "geodata.store.audited.audited).")
    act = case(world)
    last = world.scalar("SELECT coalesce(max(audit_id), 0) FROM audit_log")
    before = table_digests(world.engine)
    done = act()
    assert done.response.status_code in (200, 201, 303), (route, done.response.status_code, done.response.text[:500])
    if done.action is None:
        assert table_digests(world.engine) == before, f"{route} is declared as writing nothing but changed a table"
        return
    rows = audit_rows_after(world.engine, last)
    named = [r for r in rows if r["action"] == done.action and set(done.ids) <= set(r["ids"])]
    assert named, f"{route}: no audit row {done.action!r} naming {done.ids}; new rows: {rows}"
    secrets = set(SEED_PII) | set(done.pii) | _pii_in_db(world.engine)
    for row in rows:
        text = json.dumps({k: row[k] for k in ("ids", "detail", "member_id", "what")}, ensure_ascii=False, default=str)
        leaked = [s for s in secrets if s and s in text]
        assert not leaked, f"{route}: audit row {row['audit_id']} holds personal data {leaked}"
    if route in ANONYMOUS:
        assert {r["role"] for r in named} == {"resident"} and all(r["token_id"] is None for r in named)
    else:
        assert all(r["role"] for r in named), f"{route}: audit row without the writer's role: {named}"


#: Writes nobody logged in makes: audited as the resident's, never with a token or phone.
ANONYMOUS = {"POST /report", "POST /report/{ticket}/rate"}


# -- a crash never splits a write from its audit row -------------------------------------------------

def _fail_audit(engine, action: str) -> None:
    with engine.begin() as c:
        c.execute(sa.text(
            "CREATE OR REPLACE FUNCTION test_fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.action = '{action}' THEN RAISE EXCEPTION 'forced audit failure'; END IF; RETURN NEW; END $$"))
        c.execute(sa.text("CREATE TRIGGER test_fail_audit BEFORE INSERT ON audit_log FOR EACH ROW "
                          "EXECUTE FUNCTION test_fail_audit()"))


def _restore_audit(engine) -> None:
    with engine.begin() as c:
        c.execute(sa.text("DROP TRIGGER IF EXISTS test_fail_audit ON audit_log"))
        c.execute(sa.text("DROP FUNCTION IF EXISTS test_fail_audit()"))


@pytest.fixture()
def crashing(world):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    settings = Settings(database_url=world.engine.url.render_as_string(hide_password=False),
                        upload_dir=world.upload_dir)
    with TestClient(create_app(settings), follow_redirects=False, raise_server_exceptions=False) as client:
        world.client = client
        try:
            yield world
        finally:
            _restore_audit(world.engine)


def test_a_failing_audit_row_takes_the_incident_with_it(crashing):
    w = crashing
    hdr = w.bearer("dispatcher", ["S1"])
    before = table_digests(w.engine)
    _fail_audit(w.engine, "incident_report")
    r = w.client.post("/incidents", json={"lon": 121.4815, "lat": 31.2055, "category": "民政"}, headers=hdr)
    assert r.status_code == 500
    assert table_digests(w.engine) == before  # no incident, no event, no audit row
    _restore_audit(w.engine)
    assert w.client.post("/incidents", json={"lon": 121.4815, "lat": 31.2055, "category": "民政"},
                         headers=hdr).status_code == 201


def test_a_failing_audit_row_takes_the_residents_ticket_and_its_photo_files_with_it(crashing):
    from tests.geodata.test_visits import jpeg_with_gps

    from geodata.store import tickets

    w = crashing
    tickets.phone_hash(w.engine, PHONE)  # the deployment's report key, made once on first use
    before = table_digests(w.engine)
    _fail_audit(w.engine, "ticket_report")
    r = w.client.post("/report", data={"category": "设施报修", "description": "楼道灯坏了", "lon": "121.4815",
                                       "lat": "31.2055", "phone": PHONE},
                      files={"photos": ("p.jpg", jpeg_with_gps(), "image/jpeg")})
    assert r.status_code == 500
    assert table_digests(w.engine) == before
    folder = w.upload_dir / "tickets"
    assert not folder.exists() or not any(folder.iterdir())  # the photo file went with the rollback


def test_a_failing_step_writes_no_audit_row(world):
    """The other way round: a refused step (closing a reported incident) leaves no audit row."""
    world.incident("A", "reported")
    hdr = world.bearer("dispatcher", ["S1"])
    before = table_digests(world.engine)
    assert world.client.post("/incidents/A/close", json={"note": "x"}, headers=hdr).status_code == 409
    assert table_digests(world.engine) == before


def test_the_workers_recompute_is_audited_as_the_account_that_queued_it(world):
    """Not a route, but the write a queued job makes: the link run and its audit row (job id in the detail)."""
    from api import jobs

    url = world.engine.url.render_as_string(hide_password=False)
    jobs.record_queued(url, 77, "recompute_links", "C1", jobs.RECOMPUTE_STEPS, "leader1", None)
    saved, _ = jobs._audited_recompute(world.engine, 77, "C1", {})
    rows = {r["action"]: r for r in audit_rows_after(world.engine, 0)}
    assert rows["job_queued"]["role"] == "leader" and rows["job_queued"]["ids"] == ["77"]
    run = rows["links_recompute"]
    assert (run["role"], run["ids"], run["detail"]["job_id"]) == ("leader", [str(saved.run_id)], 77)
