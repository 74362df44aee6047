"""A resident in Chromium at 390×844: reports with a faked position and a photo, follows the ticket
while staff assign, accept and close it through the JSON routes, then rates it; another ticket
without the phone digits stays closed; the photo shown has no EXIF GPS. Screenshots in /tmp/shots."""

from __future__ import annotations

import base64
import re
import socket
import threading
import time

import pytest

from ticket_cases import gps_of, jpeg_with_gps
from tests.web.test_browser import ARGS, CHROMIUM, SHOTS, SIZES

pytestmark = [pytest.mark.browser, pytest.mark.db]

POSITION = {"longitude": 121.4812, "latitude": 31.2051}  # inside grid G1


@pytest.fixture()
def server(web_db, db_url, tmp_path):
    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(Settings(database_url=db_url, upload_dir=tmp_path))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join()


@pytest.fixture()
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS + ["--enable-unsafe-swiftshader"])
        yield b
        b.close()


def _phone(chromium, server, size="phone"):
    w, h = SIZES[size]
    context = chromium.new_context(viewport={"width": w, "height": h}, locale="zh-CN", geolocation=POSITION,
                                   permissions=["geolocation"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "404" not in m.text else None)
    return context, page, errors


def _file_report(page, server, photo: bytes, phone: str, size: str) -> str:
    page.goto(server + "/report")
    page.screenshot(path=str(SHOTS / f"report-form-{size}.png"), full_page=True)
    page.check("input[name=category][value=环境卫生]")
    page.fill("textarea[name=description]", "3 号楼楼道堆满杂物，影响通行")
    page.click("#locate")
    page.wait_for_function("() => document.getElementById('lon').value !== ''")
    assert "我的位置" in page.inner_text("#place-status")
    page.fill("input[name=address]", "中山路 1 号 3 号楼")
    page.set_input_files("#photos", files=[{"name": "gps.jpg", "mimeType": "image/jpeg", "buffer": photo}])
    page.fill("input[name=phone]", phone)
    page.click("button[type=submit]")
    page.wait_for_selector("#ticket")
    page.screenshot(path=str(SHOTS / f"report-done-{size}.png"), full_page=True)
    return page.inner_text("#ticket").strip()


def _staff(server, web_db, ticket):
    """The dispatcher assigns, the responder accepts and closes, through the JSON routes."""
    import httpx
    import sqlalchemy as sa

    from geodata.store import auth as store

    _, disp = store.create_token(web_db, "dispatcher", ["S1"], label="browser test")
    _, resp = store.create_token(web_db, "responder", ["C1"], member_id="M1", label="browser test")
    with web_db.connect() as c:
        iid = c.execute(sa.text("SELECT incident_id FROM incidents WHERE ticket = :t"), {"t": ticket}).scalar_one()
    steps = [(disp, "assign", {"member_id": "M1"}), (resp, "accept", None), (resp, "close", None)]
    for token, action, body in steps:
        r = httpx.post(f"{server}/incidents/{iid}/{action}", json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        yield action


def test_resident_reports_follows_and_rates(server, chromium, web_db):
    SHOTS.mkdir(exist_ok=True)
    context, page, errors = _phone(chromium, server)
    ticket = _file_report(page, server, jpeg_with_gps(), "13800138000", "phone")
    assert re.fullmatch(r"\d{12}", ticket)
    page.click("#follow-link")
    assert "已受理" in page.inner_text("#status")
    src = page.get_attribute(".photos img", "src")
    assert gps_of(base64.b64decode(src.split(",", 1)[1])) == {}  # the photo served back has no GPS
    seen = []
    for _action in _staff(server, web_db, ticket):
        page.reload()
        seen.append(page.inner_text("#status"))
    assert seen == ["当前状态：已派单", "当前状态：处理中", "当前状态：已办结，待评价"]
    assert "王党员已接单" in page.inner_text("#steps") and "王五" not in page.content()
    page.screenshot(path=str(SHOTS / "report-follow-phone.png"), full_page=True)
    page.check("input[name=rating][value='4']")
    page.fill("textarea[name=comment]", "处理很及时")
    page.click("#rate-form button[type=submit]")
    page.wait_for_selector("#rated")
    assert "4 星" in page.inner_text("#rated")
    page.screenshot(path=str(SHOTS / "report-rated-phone.png"), full_page=True)
    assert errors == []
    context.close()


def test_another_ticket_needs_the_phone_digits(server, chromium, web_db):
    SHOTS.mkdir(exist_ok=True)
    context, page, _ = _phone(chromium, server, "desk")
    ticket = _file_report(page, server, jpeg_with_gps(), "13900139000", "desk")
    other, _, _ = _phone(chromium, server)
    stranger = other.new_page()
    stranger.goto(f"{server}/report/{ticket}")
    stranger.screenshot(path=str(SHOTS / "report-code-phone.png"), full_page=True)
    stranger.fill("input[name=code]", "8000")
    with stranger.expect_navigation():
        stranger.click("button[type=submit]")
    assert "没有找到这张工单" in stranger.inner_text("main")
    assert "楼道" not in stranger.content() and stranger.locator(".photos img").count() == 0
    stranger.fill("input[name=code]", "9000")
    with stranger.expect_navigation():
        stranger.click("button[type=submit]")
    assert "已受理" in stranger.inner_text("#status")
    stranger.screenshot(path=str(SHOTS / "report-follow-desk.png"), full_page=True)
    other.close()
    context.close()
