"""The leaders' /needs page in Chromium at 1920×1080 (and 390×844): needs beside skills, gaps marked,
nothing cut off; screenshots in /tmp/shots."""

from __future__ import annotations

import pytest

from tests.store.test_needs import add_members, add_needs
from tests.web.test_pioneers import _serve

pytestmark = [pytest.mark.browser, pytest.mark.db]


def test_needs_page_on_a_desk_and_a_phone(web_db, db_url, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.web.conftest import PASSWORD
    from tests.web.test_browser import ARGS, CHROMIUM, SHOTS, SIZES

    add_members(web_db)
    add_needs(web_db)
    with _serve(db_url, tmp_path) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        w, h = SIZES["desk"]
        page = browser.new_context(viewport={"width": w, "height": h}, locale="zh-CN").new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/login")
        page.fill("input[name=username]", "leader1")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.goto(base + "/needs")
        assert page.inner_text("#gap-count") == "2"
        assert page.locator(".need-gap").count() == 2
        boxes = [page.locator(s).bounding_box() for s in ("#needs-h", "#supply-h")]
        assert boxes[0]["y"] == boxes[1]["y"] and boxes[0]["x"] < boxes[1]["x"]  # side by side on a desk
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "needs-desk.png"), full_page=True)
        page.set_viewport_size({"width": SIZES["phone"][0], "height": SIZES["phone"][1]})
        assert page.evaluate("() => document.documentElement.scrollWidth") <= SIZES["phone"][0]
        page.screenshot(path=str(SHOTS / "needs-phone.png"), full_page=True)
        browser.close()
    assert errors == []
