"""A responder's reminders in Chromium: log in, see two 提醒 (unread, with the incident and China time), mark the
first read — it moves below the unread one and says 已读. Screenshots at 390×844 and 1920×1080 in
/tmp/shots/responder-notices-*.png."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.web.test_browser import SHOTS, SIZES, _login, _page, browser, server  # noqa: F401 — fixtures
from tests.web.test_responder_notices import held_reminders

pytestmark = pytest.mark.browser


def test_a_responder_marks_a_reminder_read_and_it_moves_down(server, browser, web_db):  # noqa: F811
    held_reminders(web_db)
    SHOTS.mkdir(exist_ok=True)
    for size in SIZES:
        context, page, errors = _page(browser, size)
        _login(page, server, "resp1")
        page.goto(server + "/responder#notices")
        items = page.locator("ul.notices li.notice-item")
        assert items.count() == 2 and page.locator("#notices .unread-count").inner_text() == "2 条未读"
        top = items.first.get_attribute("data-notice")
        text = items.first.inner_text()
        assert "办结即将超时（黄灯）" in text and "2024-05-07 05:00" in text and "未读" in text  # China time
        page.screenshot(path=str(SHOTS / f"responder-notices-before-{size}.png"), full_page=False)
        items.first.locator("button:has-text('标为已读')").click()
        page.wait_for_url("**/responder?done=read#notices")
        assert page.locator("p.notice.ok").first.inner_text() == "提醒已标为已读。"
        items = page.locator("ul.notices li.notice-item")
        assert items.last.get_attribute("data-notice") == top  # read: below the unread one
        assert "已读 " in items.last.inner_text() and items.last.locator("button").count() == 0
        assert page.locator("#notices .unread-count").inner_text() == "1 条未读"
        page.locator("#notices").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"responder-notices-after-{size}.png"), full_page=False)
        assert errors == [], errors
        context.close()
        with web_db.begin() as c:  # unread again for the next size
            c.execute(sa.text("UPDATE notices SET read_at = NULL"))
    with web_db.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'notice_read'")).scalar_one() == 2
