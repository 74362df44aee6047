"""The dispatchers' notices page over HTTP: notices written by a real reminder run, region and role checked,
unread first with paging, marking read needs the CSRF token and is audited, and every refusal (another
street's notice, a missing one, a responder's own, no CSRF token) leaves the tables as they were."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from gridmap.dispatch import LOCAL_TZ
from tests.web.conftest import PASSWORD, csrf_from, login

pytestmark = pytest.mark.db

T0 = datetime(2024, 5, 6, 9, tzinfo=LOCAL_TZ)  # Monday 09:00


def remind(engine, incident_id: str = "INC-N1", hours: float = 20, category: str = "民政") -> list[int]:
    """An incident in grid G1 (street S1) reported at T0 and a reminder run ``hours`` later; the ids of
    the dispatchers' notices it wrote."""
    from api.jobs.reminders import run_reminders
    from geodata.store import incidents

    incidents.create_incident(engine, lon=121.4815, lat=31.2055, category=category, incident_id=incident_id,
                              reported_at=T0)
    run_reminders(engine, T0 + timedelta(hours=hours))
    with engine.connect() as c:
        return list(c.execute(sa.text("SELECT notice_id FROM notices WHERE incident_id = :i AND region_code IS NOT NULL "
                                      "ORDER BY notice_id"), {"i": incident_id}).scalars())


def counts(engine) -> dict:
    with engine.connect() as c:
        return {"unread": c.execute(sa.text("SELECT count(*) FROM notices WHERE read_at IS NULL")).scalar_one(),
                "notices": c.execute(sa.text("SELECT count(*) FROM notices")).scalar_one(),
                "audit": c.execute(sa.text("SELECT count(*) FROM audit_log WHERE action <> 'login'")).scalar_one()}


@pytest.fixture()
def disp2(web_db):
    from geodata.store import users

    users.create_user(web_db, "disp2", PASSWORD, "dispatcher", ["S2"])
    return web_db


def test_a_dispatcher_sees_the_reminder_runs_notices_in_words_with_names_and_china_time(client, web_db):
    ids = remind(web_db)
    assert len(ids) == 2  # 接单 and 办结 clocks both turned yellow (24 h windows, 20 h on)
    login(client, "disp1")
    page = client.get("/notices")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    text = page.text
    assert 'id="notice-counts">未读 <strong>2</strong> 条 · 共 2 条' in text
    assert "黄灯 · 即将超时" in text and "事件 INC-N1" in text and "民政" in text
    assert "第一网格（G1）" in text and "2024-05-07 05:00" in text  # written at T0 + 20 h, China time
    assert '<a href="/notices"' in text and "提醒通知" in text
    for nid in ids:
        assert f'href="/notices/{nid}"' in text
    one = client.get(f"/notices/{ids[0]}")
    assert one.status_code == 200
    assert "接单时限</dt><dd>2024-05-07 09:00" in one.text and "中山社区（C1）" in one.text and "外滩街道（S1）" in one.text


def test_mark_read_needs_csrf_is_audited_and_moves_the_notice_after_the_unread(client, web_db):
    ids = remind(web_db)
    login(client, "disp1")
    page = client.get(f"/notices/{ids[1]}")
    before = counts(web_db)
    refused = client.post(f"/notices/{ids[1]}/read", data={"back": "detail"})
    assert refused.status_code == 403 and counts(web_db) == before
    done = client.post(f"/notices/{ids[1]}/read", data={"back": "detail", "csrf_token": csrf_from(page.text)})
    assert done.status_code == 303 and done.headers["location"] == f"/notices/{ids[1]}?done=read"
    assert counts(web_db) == {**before, "unread": before["unread"] - 1, "audit": before["audit"] + 1}
    with web_db.connect() as c:
        audit = c.execute(sa.text("SELECT role, ids, detail FROM audit_log WHERE action = 'notice_read'")).one()
    assert audit.role == "dispatcher" and audit.ids == [str(ids[1])]
    assert audit.detail == {"by": "web:disp1", "incident_id": "INC-N1", "region_code": "G1"}
    shown = client.get(f"/notices/{ids[1]}?done=read").text
    assert "已标为已读。" in shown and "已读 " in shown and "标为已读</button>" not in shown
    listing = client.get("/notices").text
    assert listing.index(f'data-notice="{ids[0]}"') < listing.index(f'data-notice="{ids[1]}"')  # unread first
    assert 'id="notice-counts">未读 <strong>1</strong> 条' in listing


def test_another_streets_dispatcher_sees_nothing_and_gets_the_missing_page(client, web_db, disp2):
    ids = remind(web_db)
    login(client, "disp2")
    listing = client.get("/notices")
    assert listing.status_code == 200 and "INC-N1" not in listing.text and "目前没有提醒" in listing.text
    foreign, missing, junk = (client.get(f"/notices/{ids[0]}"), client.get("/notices/987654"),
                              client.get("/notices/abc"))
    assert foreign.status_code == missing.status_code == junk.status_code == 404
    same = foreign.text.replace(f"/notices/{ids[0]}", "/notices/N") == missing.text.replace("/notices/987654", "/notices/N")
    assert same and "INC-N1" not in foreign.text  # the page differs only in its own path (the 底图 form's back link)
    before = counts(web_db)
    token = csrf_from(listing.text)
    answer = client.post(f"/notices/{ids[0]}/read", data={"csrf_token": token})
    assert answer.status_code == 404 and counts(web_db) == before


def test_roles_a_leader_of_the_street_sees_them_a_responder_and_a_planner_may_not(client, web_db):
    ids = remind(web_db, hours=25)  # red: the grid is told, and the community gets the escalation
    login(client, "leader1")
    text = client.get("/notices").text
    assert "红灯 · 已超时" in text and "超时升级（吹哨报到）" in text and "中山社区（C1）" in text
    assert len(re.findall(r'data-notice="\d+"', text)) == len(ids) == 4
    login(client, "leader2")
    assert "INC-N1" not in client.get("/notices").text
    for who in ("resp1", "planner1"):
        login(client, who)
        answer = client.get("/notices")
        assert answer.status_code == 403 and '<a href="/notices"' not in answer.text
        assert client.get(f"/notices/{ids[0]}").status_code == 403
    with web_db.connect() as c:  # the responder's own notice (member M1) is not a dispatcher's
        own = c.execute(sa.text("SELECT notice_id FROM notices WHERE member_id IS NOT NULL")).scalars().all()
    login(client, "admin1")
    assert all(client.get(f"/notices/{n}").status_code == 404 for n in own)
    assert client.get(f"/notices/{ids[0]}").status_code == 200


def test_paging_twenty_a_page_unread_first(client, web_db):
    remind(web_db)
    with web_db.begin() as c:
        c.execute(sa.text("INSERT INTO notices (created_at, incident_id, region_code, kind, message, read_at) "
                          "SELECT :t + make_interval(mins => n), 'INC-N1', 'G1', 'yellow', '事件 INC-N1 第' || n || '条', "
                          "CASE WHEN n % 2 = 0 THEN :t END FROM generate_series(1, 23) n"), {"t": T0})
    login(client, "disp1")
    first, second = client.get("/notices").text, client.get("/notices?page=2").text
    assert len(re.findall(r'data-notice="\d+"', first)) == 20 and len(re.findall(r'data-notice="\d+"', second)) == 5
    assert "第 1 / 2 页" in first and 'href="/notices?page=2"' in first and 'href="/notices?page=1"' in second
    states = lambda html: re.findall(r'class="nt light-\w+ (is-read|is-unread)"', html)  # noqa: E731
    # 14 unread (the run's 2 and the 12 odd ones) before the 11 read ones
    assert states(first) == ["is-unread"] * 14 + ["is-read"] * 6 and states(second) == ["is-read"] * 5
    assert client.get("/notices?page=99").text.count('data-notice="') == 5  # past the end: the last page
