"""The pages in a real browser (Playwright + Debian's Chromium), the app served by uvicorn in a thread.

Screenshots of the login page and each home page at 390×844 and 1920×1080 go to /tmp/shots/.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from tests.web.conftest import PASSWORD, XSS_NAME

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SHOTS = Path("/tmp/shots")
SIZES = {"phone": (390, 844), "desk": (1920, 1080)}


@pytest.fixture()
def server(web_db, db_url):
    import uvicorn

    from api.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(db_url), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join()


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: run scripts/ensure_browser.sh")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _page(browser, size="desk"):
    w, h = SIZES[size]
    context = browser.new_context(viewport={"width": w, "height": h}, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append("dialog: " + d.message), d.dismiss()))
    return context, page, errors


def _login(page, base, username):
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


@pytest.mark.parametrize("username,home", [("leader1", "/leader"), ("planner1", "/planner"),
                                           ("resp1", "/responder"), ("admin1", "/")])
def test_login_lands_home_without_console_errors_then_logout(server, browser, username, home):
    SHOTS.mkdir(exist_ok=True)
    for size in SIZES:
        context, page, errors = _page(browser, size)
        page.goto(server + "/login")
        page.screenshot(path=str(SHOTS / f"login-{size}.png"), full_page=True)
        _login(page, server, username)
        assert page.url == server + home
        assert "北京时间" in page.inner_text("header")
        page.screenshot(path=str(SHOTS / f"{username}-{size}.png"), full_page=True)
        page.click("form.logout button")
        page.wait_for_load_state("networkidle")
        assert page.url == server + "/login"
        page.goto(server + home)
        assert page.url == server + "/login"  # the session is over
        assert errors == []
        context.close()


def test_responder_cannot_open_leader_and_xss_name_stays_text(server, browser):
    context, page, errors = _page(browser, "phone")
    _login(page, server, "resp1")
    assert XSS_NAME in page.inner_text("ol.households")  # shown as text, not an <img>
    assert page.locator("ol.households img").count() == 0
    response = page.goto(server + "/leader")
    assert response.status == 403
    assert [e for e in errors if "status of 403" not in e] == []  # the refused page itself is the only error
    context.close()


def test_tampered_cookie_is_rejected_and_missing_csrf_is_403(server, browser):
    context, page, _errors = _page(browser)
    _login(page, server, "leader1")
    cookie = next(c for c in context.cookies() if c["name"] == "gridmap_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    r = page.request.post(server + "/logout", form={"csrf_token": "wrong"}, max_redirects=0)
    assert r.status == 403
    assert page.goto(server + "/leader").status == 200  # the refused logout changed nothing
    context.add_cookies([{**cookie, "value": cookie["value"][::-1]}])
    page.goto(server + "/leader")
    assert page.url == server + "/login"
    context.close()
