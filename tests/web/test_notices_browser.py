"""The dispatchers' notices page in Chromium: a dispatcher logs in, follows 提醒通知 in the navigation, sees the
notices a reminder run wrote (light in words, grid name beside its code, China time), opens one, marks it read;
a dispatcher of another street sees none of it and gets the missing page for its id.
Screenshots at 390×844 and 1920×1080 in /tmp/shots/notices-*.png."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.web.test_browser import SHOTS, SIZES, _login, _page, browser, server  # noqa: F401 — fixtures
from tests.web.test_notices import disp2, remind  # noqa: F401 — fixture

pytestmark = pytest.mark.browser


def test_a_dispatcher_opens_a_reminder_notice_and_marks_it_read_another_street_sees_nothing(
        server, browser, web_db, disp2):  # noqa: F811
    ids = remind(web_db, hours=25)  # red: two notices for grid G1, two escalations to community C1
    SHOTS.mkdir(exist_ok=True)
    for size in SIZES:
        context, page, errors = _page(browser, size)
        _login(page, server, "disp1")
        page.click("nav.nav a[href='/notices']")
        page.wait_for_url("**/notices")
        assert page.inner_text("#notice-counts") == "未读 4 条 · 共 4 条"
        card = page.locator(f"li.nt[data-notice='{ids[0]}']")
        text = card.inner_text()
        assert "红灯 · 已超时" in text and "事件 INC-N1" in text and "民政" in text and "第一网格（G1）" in text
        assert "2024-05-07 10:00" in text  # the run at T0 + 25 h, in China time
        page.screenshot(path=str(SHOTS / f"notices-list-{size}.png"), full_page=True)
        assert errors == [], errors
        context.close()
    context, page, errors = _page(browser, "phone")
    _login(page, server, "disp1")
    page.goto(server + "/notices")
    page.locator(f"li.nt[data-notice='{ids[0]}'] a.btn").click()
    page.wait_for_url(f"**/notices/{ids[0]}")
    assert page.inner_text("#incident-id") == "INC-N1" and page.inner_text("#grid") == "第一网格（G1）"
    assert "未读" in page.inner_text(".nt-state")
    page.click("button:has-text('标为已读')")
    page.wait_for_url(f"**/notices/{ids[0]}?done=read")
    assert page.inner_text(".flash") == "已标为已读。" and page.inner_text(".nt-state").startswith("已读 ")
    page.screenshot(path=str(SHOTS / "notices-detail-phone.png"), full_page=True)
    page.goto(server + "/notices")
    assert page.inner_text("#notice-counts") == "未读 3 条 · 共 4 条"
    assert page.locator("li.nt").last.get_attribute("data-notice") == str(ids[0])  # read: after the unread
    assert errors == [], errors
    context.close()
    with web_db.connect() as c:
        audited = c.execute(sa.text("SELECT ids FROM audit_log WHERE action = 'notice_read'")).scalars().all()
    assert audited == [[str(ids[0])]]
    context, page, errors = _page(browser, "desk")
    _login(page, server, "disp2")
    page.goto(server + "/notices")
    assert "INC-N1" not in page.content() and "目前没有提醒" in page.inner_text("main")
    answer = page.goto(server + f"/notices/{ids[0]}")
    assert answer.status == 404 and "INC-N1" not in page.content()
    assert "不在您的管辖范围内" in page.inner_text("main")
    context.close()
    context, page, errors = _page(browser, "desk")
    _login(page, server, "disp1")
    page.goto(server + f"/notices/{ids[1]}")
    page.screenshot(path=str(SHOTS / "notices-detail-desk.png"), full_page=True)
    context.close()
