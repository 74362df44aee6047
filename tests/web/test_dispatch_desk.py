"""The dispatchers' desk (/dispatch, 调度台) over HTTP on the real PostGIS: the list grouped 待派单 → 已派单待接单 →
处理中 with both clocks in words, filters and paging; one incident with the responders proposed by the rule of
``propose`` (nearest first, the required skill, inside my regions) and names masked where the region does not
allow them; 派单 through ``api.usecases.dispatch.act`` (audited); roles, regions (missing and another street's
incident: the same 404), CSRF, and conflicts — every refused request leaves every table unchanged."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from gridmap.dispatch import LOCAL_TZ
from tests.api.test_every_write_audited import table_digests
from tests.web.conftest import PASSWORD, _h3, csrf_from, login

pytestmark = pytest.mark.db

#: The resident's spot in grid G1 (WGS84).
SPOT = (121.4815, 31.2055)


def add_member(engine, member_id: str, grid: str, name: str, lon: float, lat: float, skills=None,
               available: bool = True) -> None:
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO members (member_id, grid_code, name, phone, skills, available, h3, geom) "
                          "VALUES (:m, :g, :n, '13900001111', :s, :a, :cell, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
                  {"m": member_id, "g": grid, "n": name, "s": skills, "a": available, "cell": _h3(lat, lon),
                   "x": lon, "y": lat})


@pytest.fixture()
def desk(web_db, tmp_path):
    """Responders around SPOT in grid G1: M1 (no skill, ~35 m), M2 (医疗, ~110 m), M3 (法律+医疗, ~600 m);
    M4 (G2, 医疗); M9 (G9, street S2, 医疗); a dispatcher of street S2 (disp2); a resident's fresh report
    needing 医疗."""
    from geodata.store import tickets, users

    add_member(web_db, "M2", "G1", "赵六", 121.4826, 31.2057, ["医疗"])
    add_member(web_db, "M3", "G1", "钱七", 121.4870, 31.2080, ["法律", "医疗"])
    add_member(web_db, "M4", "G2", "周八", 121.4915, 31.2060, ["医疗"])
    add_member(web_db, "M9", "G9", "孙九", 121.5050, 31.2055, ["医疗"])
    users.create_user(web_db, "disp2", PASSWORD, "dispatcher", ["S2"])
    made = tickets.create_ticket(web_db, lon=SPOT[0], lat=SPOT[1], category="医疗救助", required_skill="医疗",
                                 description="三楼独居老人摔倒了，起不来，家里没人，请尽快派人来看看，门牌在楼道口右手边第二户，谢谢你们了",
                                 phone="13957006688", upload_dir=tmp_path)
    return made["incident_id"]


def staff_incident(engine, iid: str, category: str = "市容环境", hours_ago: float = 1, upto: str = "reported",
                   member: str = "M1") -> str:
    from geodata.store import incidents

    incidents.create_incident(engine, lon=SPOT[0] + 0.0005, lat=SPOT[1], category=category, incident_id=iid,
                              reported_at=datetime.now(LOCAL_TZ) - timedelta(hours=hours_ago))
    steps = {"reported": [], "assigned": ["assign"], "accepted": ["assign", "accept"]}[upto]
    for step in steps:
        incidents.transition(engine, iid, step, member_id=member if step == "assign" else None)
    return iid


def test_the_list_groups_open_incidents_with_both_clocks_in_words(client, web_db, desk):
    staff_incident(web_db, "INC-ASSIGNED", upto="assigned", member="M2")
    staff_incident(web_db, "INC-TAKEN", upto="accepted", member="M3")
    staff_incident(web_db, "INC-LATE", hours_ago=30)  # both 24 h clocks are red
    login(client, "disp1")
    page = client.get("/dispatch")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    text = page.text
    order = [text.index(h) for h in ('id="h-reported"', 'id="h-assigned"', 'id="h-accepted"')]
    assert order == sorted(order)
    ids = re.findall(r'data-incident="([^"]+)"', text)
    assert ids == ["INC-LATE", desk, "INC-ASSIGNED", "INC-TAKEN"]  # red first among 待派单
    assert re.search(r'待派单 <strong id="count-pending">2</strong> 件 · 红灯 <strong id="count-red">1</strong>', text)
    card = text[text.index(f'data-incident="{desk}"'):text.index('data-incident="INC-ASSIGNED"')]
    assert "医疗救助" in card and "居民上报" in card and "需医疗" in card and "第一网格（G1）" in card
    assert "“三楼独居老人摔倒了" in card and "…" in card and "谢谢你们了" not in card  # shortened
    assert "<b>接单</b>" in card and "<b>办结</b>" in card and "绿灯·正常 · 时限 " in card and "还剩 23 小时" in card
    late = text[text.index('data-incident="INC-LATE"'):text.index(f'data-incident="{desk}"')]
    assert "红灯·已超时" in late and "已超时 6 小时" in late and "工作人员" in late
    assigned = text[text.index('data-incident="INC-ASSIGNED"'):text.index('data-incident="INC-TAKEN"')]
    assert "负责人：<span class=\"holder-name\">赵六（M2）</span>（已派单，待对方接单）" in assigned
    taken = text[text.index('data-incident="INC-TAKEN"'):]
    assert "已于 " in taken and "钱七（M3）" in taken  # the 接单 clock stopped when M3 took it
    reported = datetime.fromisoformat(str(_scalar(web_db, "SELECT reported_at FROM incidents WHERE incident_id = :i",
                                                  i=desk)))
    assert f"上报 {reported.astimezone(LOCAL_TZ):%Y-%m-%d %H:%M}" in card  # China time
    assert '<a href="/dispatch" aria-current="page">调度台</a>' in text


def _scalar(engine, sql: str, **params):
    with engine.connect() as c:
        return c.execute(sa.text(sql), params).scalar_one()


def test_filters_paging_and_the_fragment(client, web_db, desk):
    for n in range(22):
        staff_incident(web_db, f"INC-P{n:02d}", category="市容环境", hours_ago=2 + n / 10)
    staff_incident(web_db, "INC-RED", category="安全隐患", hours_ago=30)
    login(client, "disp1")
    first = client.get("/dispatch").text
    assert len(re.findall(r'data-incident="', first)) == 20 and "第 1 / 2 页" in first
    second = client.get("/dispatch?page=2").text
    assert len(re.findall(r'data-incident="', second)) == 4 and 'href="/dispatch?page=1"' in second
    red = client.get("/dispatch?light=red").text
    assert re.findall(r'data-incident="([^"]+)"', red) == ["INC-RED"] and "筛选后 1 件" in red
    cat = client.get("/dispatch", params={"category": "医疗救助"}).text
    assert re.findall(r'data-incident="([^"]+)"', cat) == [desk]
    assert re.findall(r'data-incident="([^"]+)"', client.get("/dispatch?status=assigned").text) == []
    assert "没有符合筛选条件的事件" in client.get("/dispatch?status=assigned").text
    junk = client.get("/dispatch?status=nonsense&light=blue")  # unknown filter values mean "all"
    assert junk.status_code == 200 and "第 1 / 2 页" in junk.text
    fragment = client.get("/dispatch/fragments/list?light=red")
    assert fragment.status_code == 200 and "<html" not in fragment.text and "INC-RED" in fragment.text
    assert 'id="count-pending">24<' in fragment.text and fragment.headers["cache-control"] == "no-store"


def test_the_detail_proposes_the_nearest_with_the_skill_in_distance_order_names_audited(client, web_db, desk):
    login(client, "disp1")
    before = _scalar(web_db, "SELECT count(*) FROM audit_log WHERE action = 'pii_read'")
    page = client.get(f"/dispatch/{desk}")
    assert page.status_code == 200
    text = page.text
    members = re.findall(r'<li class="resp[^"]*" data-member="([^"]+)" data-number="(\d)"', text)
    # M1 is nearer but lacks 医疗; the grid has suitable people, so M4 (G2) is not reached; M9 is another street's
    assert members == [("M2", "1"), ("M3", "2")]
    dists = [float(d) for d in re.findall(r'<strong class="dist">(\d+) 米</strong>', text)]
    assert dists == sorted(dists) and 90 < dists[0] < 130 and 500 < dists[1] < 700
    assert "直线距离" in text and "不是步行距离" in text and "推荐范围：本网格" in text
    assert "<strong>赵六</strong>（M2） · 党员" in text and "网格 第一网格（G1）" in text
    assert '<span class="tag skill-match">✔ 医疗（所需）</span>' in text
    assert "手头未办结 0 件" in text and "三楼独居老人摔倒了，起不来" in text  # the whole description here
    assert text.count('name="seen" value="reported:"') == 2
    rows = _audit(web_db, "pii_read")
    assert len(rows) == before + 1 and rows[-1]["what"] == "members" and rows[-1]["ids"] == ["M2", "M3"]
    assert "孙九" not in text and "M9" not in text and "M4" not in text


def test_nobody_suitable_in_the_grid_widens_to_the_community(client, web_db, desk):
    from geodata.store import incidents

    incidents.create_incident(web_db, lon=121.495, lat=31.205, category="矛盾纠纷", required_skill="法律",
                              incident_id="INC-G2")
    login(client, "disp1")
    text = client.get("/dispatch/INC-G2").text
    assert re.findall(r'data-member="([^"]+)"', text) == ["M3"]  # G2's M4 lacks 法律: 吹哨 to community C1
    assert "推荐范围：本社区" in text and '<span class="tag skill-match">✔ 法律（所需）</span>' in text


def _audit(engine, action: str) -> list[dict]:
    with engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(sa.text(
            "SELECT role, what, ids, detail FROM audit_log WHERE action = :a ORDER BY audit_id"), {"a": action})]


def _assign(client, iid: str, member: str, seen: str = "reported:", token: str | None = None):
    token = token if token is not None else csrf_from(client.get("/dispatch").text)
    return client.post(f"/dispatch/{iid}/assign", data={"csrf_token": token, "member_id": member, "seen": seen})


def test_assign_goes_through_act_audited_and_lands_under_assigned(client, web_db, desk):
    login(client, "disp1")
    done = _assign(client, desk, "M3")
    assert done.status_code == 303
    assert done.headers["location"] == f"/dispatch?done=assigned&incident={desk}&member=M3"
    with web_db.connect() as c:
        row = c.execute(sa.text("SELECT status, assigned_member_id FROM incidents WHERE incident_id = :i"),
                        {"i": desk}).one()
    assert tuple(row) == ("assigned", "M3")
    audit = _audit(web_db, "incident_assign")
    assert audit == [{"role": "dispatcher", "what": "incidents", "ids": [desk],
                      "detail": {"status": "assigned", "assigned_member_id": "M3"}}]
    text = client.get(done.headers["location"]).text
    assert f"已派单：事件 {desk} 已派给 钱七（M3），等待对方接单" in text
    section = text[text.index('id="h-assigned"'):]
    assert f'data-incident="{desk}"' in section and "钱七（M3）" in section
    assert 'id="count-pending">0<' in text
    again = client.get(f"/dispatch/{desk}").text  # 改派 offered to the other one, M3 marked as holding it
    assert "当前负责" in again and "改派给 1 号" in again and "改派给 2 号" not in again


def test_conflicts_answer_in_chinese_and_change_nothing(client, web_db, desk):
    from api.auth import Principal
    from api.usecases import dispatch

    login(client, "disp1")
    token = csrf_from(client.get(f"/dispatch/{desk}").text)
    # another dispatcher assigns M2 meanwhile
    other = Principal(0, "dispatcher", ["S1"], engine=web_db)
    dispatch.act(web_db, other, desk, "assign", member_id="M2", within=other.grid_codes())
    before = table_digests(web_db)
    stale = _assign(client, desk, "M3", token=token)
    assert stale.status_code == 409 and "已由其他人派给 M2" in stale.text and "没有做任何改动" in stale.text
    assert table_digests(web_db) == before and "赵六" not in stale.text
    # the incident moved on: M2 accepted it
    from geodata.store import incidents

    incidents.transition(web_db, desk, "accept")
    before = table_digests(web_db)
    moved = _assign(client, desk, "M3", seen="assigned:M2", token=token)
    assert moved.status_code == 409 and "现在是“处理中”" in moved.text
    assert table_digests(web_db) == before
    # a responder gone off duty, and one of another street (form tampering): refused, nothing written
    fresh = staff_incident(web_db, "INC-FRESH")
    with web_db.begin() as c:
        c.execute(sa.text("UPDATE members SET available = false WHERE member_id = 'M2'"))
    before = table_digests(web_db)
    off = _assign(client, fresh, "M2", token=token)
    assert off.status_code == 409 and "不能接派" in off.text and table_digests(web_db) == before
    far = _assign(client, fresh, "M9", token=token)
    assert far.status_code == 409 and "不在您的管辖范围内" in far.text and table_digests(web_db) == before


def test_csrf_regions_and_roles(client, web_db, desk):
    login(client, "disp1")
    before = table_digests(web_db)
    no_token = client.post(f"/dispatch/{desk}/assign", data={"member_id": "M2", "seen": "reported:"})
    assert no_token.status_code == 403 and table_digests(web_db) == before
    login(client, "disp2")  # street S2
    listing = client.get("/dispatch")
    before = table_digests(web_db)
    assert listing.status_code == 200 and desk not in listing.text and "本辖区目前没有未办结的事件" in listing.text
    assert desk not in client.get("/dispatch/fragments/list").text
    foreign, missing = client.get(f"/dispatch/{desk}"), client.get("/dispatch/INC-NOPE")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.text.replace(desk, "X") == missing.text.replace("INC-NOPE", "X") and "医疗救助" not in foreign.text
    token = csrf_from(listing.text)
    for iid in (desk, "INC-NOPE"):
        answer = _assign(client, iid, "M9", token=token)
        assert answer.status_code == 404 and "不在您的管辖范围内" in answer.text
    assert table_digests(web_db) == before
    for who in ("resp1", "planner1"):
        login(client, who)
        token = csrf_from(client.get("/", follow_redirects=True).text)
        before = table_digests(web_db)
        for answer in (client.get("/dispatch"), client.get(f"/dispatch/{desk}"), client.get("/dispatch/fragments/list"),
                       _assign(client, desk, "M2", token=token)):
            assert answer.status_code == 403 and "不能打开这个页面" in answer.text
        assert table_digests(web_db) == before
        assert '<a href="/dispatch"' not in client.get("/", follow_redirects=True).text
    for who in ("leader1", "admin1"):
        login(client, who)
        assert client.get(f"/dispatch/{desk}").status_code == 200 and desk in client.get("/dispatch").text
    login(client, "leader2")
    assert client.get(f"/dispatch/{desk}").status_code == 404


def test_a_holder_from_another_street_is_masked_for_the_street_and_shown_to_admin(client, web_db, desk):
    from geodata.store import incidents

    # escalated (吹哨报到) by a city-wide token: M9 of street S2 holds S1's incident
    incidents.transition(web_db, desk, "assign", member_id="M9")
    login(client, "disp1")
    before = len(_audit(web_db, "pii_read"))
    text = client.get("/dispatch").text
    assert "孙*（M9）" in text and "孙九" not in text
    detail = client.get(f"/dispatch/{desk}").text
    assert '<span id="holder">孙*（M9）</span>' in detail and "孙九" not in detail
    assert all("M9" not in r["ids"] for r in _audit(web_db, "pii_read")[before:])
    login(client, "admin1")
    assert '<span id="holder">孙九（M9）</span>' in client.get(f"/dispatch/{desk}").text
    assert _audit(web_db, "pii_read")[-1]["ids"] == ["M2", "M3", "M9"]


def test_two_dispatchers_at_the_same_moment_the_second_waits_and_is_told(web_db, desk):
    """The row stays locked from the check to the write: a 派单 that arrives while another holds the
    incident waits, then finds it assigned and writes nothing."""
    import threading

    from api.auth import Principal
    from api.usecases import dispatch_desk
    from geodata.store import incidents
    from geodata.store.audited import OneTransaction

    me = Principal(0, "dispatcher", ["S1"], engine=web_db)
    outcome: dict = {}

    def second():
        try:
            outcome["result"] = dispatch_desk.assign(web_db, me, desk, "M3", "reported:")
        except dispatch_desk.Conflict as e:
            outcome["conflict"] = str(e)

    with web_db.begin() as first:  # the first dispatcher's transaction holds the row
        incidents.get_row(first, desk, lock=True)
        waiting = threading.Thread(target=second)
        waiting.start()
        with web_db.connect() as look:  # until the second is seen waiting for the row lock
            while not look.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                           "AND query LIKE '%FOR UPDATE%'")).scalar_one():
                look.commit()
        incidents.transition(OneTransaction(first), desk, "assign", member_id="M2")
    waiting.join()
    assert "已由其他人派给 M2" in outcome["conflict"] and "result" not in outcome
    assert _scalar(web_db, "SELECT assigned_member_id FROM incidents WHERE incident_id = :i", i=desk) == "M2"
    assert _audit(web_db, "incident_assign") == []


def test_a_notice_links_its_incident_to_the_desk(client, web_db):
    from tests.web.test_notices import remind

    ids = remind(web_db)
    login(client, "disp1")
    notice = client.get(f"/notices/{ids[0]}").text
    assert '<a href="/dispatch/INC-N1"' in notice
    assert client.get("/dispatch/INC-N1").status_code == 200
