"""The responders' page on a 390×844 phone in Chromium: my households as /me/households lists them, one
marker per building, and 签到走访 with a faked geolocation. Screenshots in /tmp/shots/responder-*.png."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.web.test_browser import ARGS, CHROMIUM, SHOTS, SIZES, _login, browser, server  # noqa: F401 — fixtures

pytestmark = pytest.mark.browser


def test_phone_lists_my_households_and_checks_in_with_the_phone_position(server, browser, web_db):  # noqa: F811
    with web_db.begin() as c:
        c.execute(sa.text("UPDATE households SET building = '5', unit = '2', room = '0301', "
                          "tags = ARRAY['独居老人'] WHERE household_id IN ('H1', 'H2')"))
    SHOTS.mkdir(exist_ok=True)
    for size in ("phone", "desk"):
        w, h = SIZES[size]
        context = browser.new_context(viewport={"width": w, "height": h}, locale="zh-CN",
                                      geolocation={"longitude": 121.4811, "latitude": 31.2050, "accuracy": 8},
                                      permissions=["geolocation"])
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
        _login(page, server, "resp1")
        listed = page.eval_on_selector_all("ol.households > li", "els => els.map(e => e.dataset.household)")
        api = page.request.get(server + "/me/households").json()
        # the same households; after the phone's check-in H1 is no longer due and moves behind H2
        assert sorted(listed) == sorted(r["household_id"] for r in api) == ["H1", "H2"]
        assert listed == (["H1", "H2"] if size == "phone" else ["H2", "H1"])
        page.wait_for_selector(".bld-marker")
        assert page.locator(".bld-marker").count() == 1  # one building, not two stacked markers
        page.screenshot(path=str(SHOTS / f"responder-home-{size}.png"), full_page=True)
        if size == "phone":
            first = page.locator("ol.households > li").first
            first.locator("summary").click()
            page.wait_for_function("() => document.querySelector('details.checkin[open] input[name=lon]').value !== ''")
            first.locator("textarea[name=note]").fill("老人身体良好")
            page.screenshot(path=str(SHOTS / f"responder-checkin-{size}.png"), full_page=False)
            first.locator("button[type=submit]").click()
            page.wait_for_load_state("networkidle")
            assert "已签到" in page.inner_text(".notice")
            page.screenshot(path=str(SHOTS / f"responder-done-{size}.png"), full_page=True)
            with web_db.connect() as c:
                v = c.execute(sa.text("SELECT household_id, accuracy_m, far, ST_X(geom) AS lon FROM visits")).one()
            assert (v.household_id, v.accuracy_m, v.far) == (api[0]["household_id"], 8.0, False)
            assert abs(v.lon - 121.4811) < 1e-9
        assert errors == []
        context.close()
