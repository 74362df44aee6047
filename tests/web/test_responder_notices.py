"""A responder's own reminders (提醒 on /responder) over HTTP: unread first, 标为已读 needs the CSRF token, is
audited (the notice id, no personal data) and only works on the responder's own notices — another member's
notice, a dispatchers' notice and a missing one answer the same 404 page and change nothing."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.web.conftest import PASSWORD, csrf_from, login
from tests.web.test_notices import T0

pytestmark = pytest.mark.db


def held_reminders(engine, holders=(("LATE1", "M1"), ("LATE2", "M1"))) -> dict[str, int]:
    """Incidents in grid G1 reported at T0, each claimed by its holder an hour later, and one reminder run
    20 h after T0 (办结 clock yellow): one notice per holder and incident. Returns incident id → the
    holder's notice id."""
    from api.jobs.reminders import run_reminders
    from geodata.store import incidents

    for iid, member in holders:
        incidents.create_incident(engine, lon=121.4815, lat=31.2055, category="民政", incident_id=iid, reported_at=T0)
        incidents.transition(engine, iid, "claim", acting_member=member, at=T0 + timedelta(hours=1))
    run_reminders(engine, T0 + timedelta(hours=20))
    with engine.connect() as c:
        return dict(c.execute(sa.text("SELECT incident_id, notice_id FROM notices WHERE member_id IS NOT NULL")).all())


def state(engine) -> dict:
    with engine.connect() as c:
        return {"read": c.execute(sa.text("SELECT notice_id, read_at FROM notices ORDER BY notice_id")).all(),
                "audit": c.execute(sa.text("SELECT count(*) FROM audit_log WHERE action <> 'login'")).scalar_one()}


@pytest.fixture()
def resp2(web_db):
    """A second responder, M2 in grid G1, with the account resp2."""
    from geodata.store import users

    with web_db.begin() as c:
        c.execute(sa.text("INSERT INTO members (member_id, grid_code, name, h3, geom) SELECT 'M2', 'G1', '赵六', h3, geom "
                          "FROM members WHERE member_id = 'M1'"))
    users.create_user(web_db, "resp2", PASSWORD, "responder", ["C1"], member_id="M2")
    return web_db


def _order(html: str) -> list[str]:
    return re.findall(r'data-notice="(\d+)"', html)


def test_marking_my_notice_read_is_audited_and_moves_it_after_the_unread(client, web_db):
    ids = held_reminders(web_db)
    login(client, "resp1")
    page = client.get("/responder").text
    assert "2 条未读" in page and page.count("标为已读") == 2
    first = _order(page)[0]
    r = client.post(f"/responder/notices/{first}/read", data={"csrf_token": csrf_from(page)})
    assert r.status_code == 303 and r.headers["location"] == "/responder?done=read#notices"
    after = client.get(r.headers["location"]).text
    assert "提醒已标为已读。" in after and "1 条未读" in after and after.count("标为已读</button>") == 1
    assert _order(after) == [n for n in _order(page) if n != first] + [first]  # read: after the unread
    assert "已读 " in after[after.index(f'data-notice="{first}"'):]
    with web_db.connect() as c:
        row = c.execute(sa.text("SELECT role, member_id, what, ids, detail FROM audit_log "
                                "WHERE action = 'notice_read'")).one()
    incident = next(i for i, n in ids.items() if str(n) == first)
    assert (row.role, row.member_id, row.what, row.ids) == ("responder", "M1", "notices", [first])
    assert row.detail == {"incident_id": incident}


def test_another_members_notice_a_dispatchers_and_a_missing_one_are_the_same_404(client, web_db, resp2):
    ids = held_reminders(web_db, (("LATE1", "M1"), ("LATE2", "M2")))
    login(client, "resp1")
    token = csrf_from(client.get("/responder").text)
    with web_db.connect() as c:
        region_notice = c.execute(sa.text("SELECT notice_id FROM notices WHERE region_code IS NOT NULL LIMIT 1")).scalar()
    before = state(web_db)
    answers = [client.post(f"/responder/notices/{n}/read", data={"csrf_token": token})
               for n in (ids["LATE2"], region_notice, 999_999, "x1")]
    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    # one page for all (the path itself is echoed in the page's base-map form)
    assert len({re.sub(r"/responder/notices/\w+/read", "", a.text) for a in answers}) == 1
    assert client.post(f"/responder/notices/{ids['LATE1']}/read", data={}).status_code == 403  # no CSRF token
    assert state(web_db) == before
    login(client, "disp1")  # a dispatcher (no member) has no notices of their own: the same 404
    assert client.post(f"/responder/notices/{ids['LATE1']}/read",
                       data={"csrf_token": csrf_from(client.get("/notices").text)}).status_code == 404
    assert state(web_db) == before
