"""The dispatchers' desk in Chromium: a dispatcher logs in, follows 调度台, sees a resident's fresh report under
待派单, opens it, reads the responders nearest first (the required skill marked, numbered like the map's
markers), clicks 派单 on the second and finds the incident under 已派单待接单 with that responder; 刷新 brings a
new report in without leaving the page; a dispatcher of another street sees none of it and gets the missing page
for its URL. Screenshots at 390×844 and 1920×1080 in /tmp/shots/dispatch-*.png."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.web.test_browser import SHOTS, SIZES, _login, _page, browser, server  # noqa: F401 — fixtures
from tests.web.test_dispatch_desk import desk, staff_incident  # noqa: F401 — fixture

pytestmark = pytest.mark.browser


def _open_desk(page, server):  # noqa: F811
    _login(page, server, "disp1")
    page.click("nav.nav a[href='/dispatch']")
    page.wait_for_url("**/dispatch")


def test_a_dispatcher_assigns_a_residents_report_to_the_second_responder(server, browser, web_db, desk):  # noqa: F811
    SHOTS.mkdir(exist_ok=True)
    staff_incident(web_db, "INC-HELD", upto="accepted", member="M1")
    staff_incident(web_db, "INC-LATE", category="安全隐患", hours_ago=30)  # both clocks red: first in 待派单
    for size in SIZES:  # the list and the detail at both sizes, before anything is assigned
        context, page, errors = _page(browser, size)
        _open_desk(page, server)
        page.screenshot(path=str(SHOTS / f"dispatch-list-{size}.png"), full_page=True)
        page.goto(server + f"/dispatch/{desk}")
        page.wait_for_function("() => document.querySelectorAll('#desk-map .desk-marker').length === 3")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(SHOTS / f"dispatch-detail-{size}.png"), full_page=True)
        assert errors == [], errors
        context.close()
    context, page, errors = _page(browser, "phone")
    _open_desk(page, server)
    assert page.inner_text("#count-pending") == "2" and page.inner_text("#count-red") == "1"
    first_card = page.locator("section.group-reported li.inc").first
    assert first_card.get_attribute("data-incident") == "INC-LATE" and "红灯·已超时" in first_card.inner_text()
    card = page.locator(f"section.group-reported li.inc[data-incident='{desk}']")
    text = card.inner_text()
    assert "医疗救助" in text and "居民上报" in text and "第一网格（G1）" in text and "接单" in text and "绿灯·正常" in text
    assert page.locator("section.group-accepted li.inc[data-incident='INC-HELD']").count() == 1
    card.locator("a.btn", has_text="派单").click()
    page.wait_for_url(f"**/dispatch/{desk}")
    rows = page.locator("ol.responders li.resp")
    assert rows.count() == 2
    first, second = rows.nth(0).inner_text(), rows.nth(1).inner_text()
    assert "赵六" in first and "M2" in first and "钱七" in second and "M3" in second  # nearest first
    metres = [int(page.locator("ol.responders li.resp .dist").nth(i).inner_text().split()[0]) for i in range(2)]
    assert metres[0] < metres[1] and "直线距离" in first
    assert rows.nth(0).locator(".skill-match").inner_text() == "✔ 医疗（所需）"
    assert [m.inner_text() for m in page.locator("#desk-map .desk-marker").all()] == ["2", "1", "事"]
    rows.nth(1).locator("button", has_text="派单给 2 号").click()
    page.wait_for_url("**/dispatch?done=assigned*")
    assert page.inner_text("#desk-flash") == f"已派单：事件 {desk} 已派给 钱七（M3），等待对方接单。"
    moved = page.locator(f"section.group-assigned li.inc[data-incident='{desk}']")
    assert "钱七（M3）" in moved.inner_text() and page.inner_text("#count-pending") == "1"
    page.screenshot(path=str(SHOTS / "dispatch-assigned-phone.png"), full_page=True)
    staff_incident(web_db, "INC-NEW", category="安全隐患")  # someone reports meanwhile: 刷新 brings it in
    page.click("#desk-refresh")
    page.wait_for_function("() => document.getElementById('count-pending').textContent === '2'")
    assert page.locator("section.group-reported li.inc[data-incident='INC-NEW']").count() == 1
    assert page.url.endswith("member=M3")  # refreshed in place
    assert errors == [], errors
    context.close()
    with web_db.connect() as c:
        holder = c.execute(sa.text("SELECT assigned_member_id FROM incidents WHERE incident_id = :i"),
                           {"i": desk}).scalar_one()
        audited = c.execute(sa.text("SELECT ids FROM audit_log WHERE action = 'incident_assign'")).scalars().all()
    assert holder == "M3" and audited == [[desk]]
    context, page, errors = _page(browser, "desk")
    _login(page, server, "disp2")
    page.goto(server + "/dispatch")
    assert desk not in page.content() and "本辖区目前没有未办结的事件" in page.inner_text("main")
    answer = page.goto(server + f"/dispatch/{desk}")
    assert answer.status == 404 and "医疗救助" not in page.content() and "不在您的管辖范围内" in page.inner_text("main")
    context.close()


def test_a_stale_page_is_told_someone_else_assigned_it_and_nothing_changes(server, browser, web_db, desk):  # noqa: F811
    (ctx1, slow, errors1), (ctx2, quick, errors2) = _page(browser, "phone"), _page(browser, "desk")
    for page in (slow, quick):
        _login(page, server, "disp1")
        page.goto(server + f"/dispatch/{desk}")
    quick.locator("ol.responders li.resp").nth(0).locator("button").click()
    quick.wait_for_url("**/dispatch?done=assigned*")
    slow.locator("ol.responders li.resp").nth(1).locator("button").click()
    slow.wait_for_load_state("networkidle")
    assert "已由其他人派给 M2" in slow.inner_text("#desk-problem") and "没有做任何改动" in slow.inner_text("main")
    slow.screenshot(path=str(SHOTS / "dispatch-conflict-phone.png"), full_page=True)
    slow.click("a:has-text('查看事件最新情况')")
    slow.wait_for_url(f"**/dispatch/{desk}")
    assert "赵六（M2）" in slow.inner_text("#holder")
    with web_db.connect() as c:
        assert c.execute(sa.text("SELECT assigned_member_id FROM incidents WHERE incident_id = :i"),
                         {"i": desk}).scalar_one() == "M2"
    # the browser logs the refused POST's 409 as a failed load: that one is expected
    assert [e for e in errors1 if "status of 409" not in e] == [] and errors2 == []
    ctx1.close()
    ctx2.close()
