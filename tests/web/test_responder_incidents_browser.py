"""The responders' incident section on a 390×844 phone in Chromium: two responders tap 接单 on the same
nearby incident (one wins, the other is told), the winner closes it with a result note and a photo.
Screenshots in /tmp/shots/responder-incidents-*.png."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import sqlalchemy as sa

from tests.geodata.test_visits import jpeg_with_gps
from tests.web.test_browser import ARGS, CHROMIUM, SHOTS, SIZES, _login, browser  # noqa: F401 — fixtures

pytestmark = pytest.mark.browser


@pytest.fixture()
def incident_server(web_db, db_url, tmp_path):
    """The app in a thread with uploads under ``tmp_path``, a second responder M2 (resp2) in grid G1 and
    one nearby incident A (民政, no skill needed)."""
    import uvicorn

    from api.app import create_app
    from api.settings import Settings
    from geodata.store import incidents, users
    from tests.web.conftest import seed_region  # noqa: F401 — the region is seeded by web_db

    with web_db.begin() as c:
        c.execute(sa.text("INSERT INTO members (member_id, grid_code, name, h3, geom) SELECT 'M2', 'G1', '赵六', "
                          "h3, geom FROM members WHERE member_id = 'M1'"))
    users.create_user(web_db, "resp2", "correct-horse-9", "responder", ["C1"], member_id="M2")
    incidents.create_incident(web_db, lon=121.4815, lat=31.2055, category="民政", incident_id="INC-A")
    incidents.create_incident(web_db, lon=121.4825, lat=31.2058, category="市容环境", incident_id="INC-B")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(Settings(database_url=db_url, upload_dir=tmp_path / "uploads"))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", tmp_path / "uploads"
    srv.should_exit = True
    thread.join()


def _phone(browser, size="phone"):  # noqa: F811
    w, h = SIZES[size]
    context = browser.new_context(viewport={"width": w, "height": h}, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return context, page, errors


def test_two_phones_claim_the_same_incident_one_wins_and_closes_it_with_a_photo(incident_server, browser,  # noqa: F811
                                                                                  web_db, tmp_path):
    base, uploads = incident_server
    SHOTS.mkdir(exist_ok=True)
    (ctx1, one, errors1), (ctx2, two, errors2) = _phone(browser), _phone(browser)
    _login(one, base, "resp1")
    _login(two, base, "resp2")
    for page in (one, two):
        assert page.locator("ul.nearby li[data-incident=INC-A]").count() == 1
    one.screenshot(path=str(SHOTS / "responder-incidents-nearby-phone.png"), full_page=True)
    # both tap 接单 on INC-A: the second tap is sent before the first page has navigated
    two.locator("ul.nearby li[data-incident=INC-A] button").click(no_wait_after=True)
    one.locator("ul.nearby li[data-incident=INC-A] button").click(no_wait_after=True)
    for page in (one, two):
        page.wait_for_url("**/responder?done=*")
        page.wait_for_load_state("networkidle")
    texts = {name: page.inner_text(".notice") for name, page in (("M1", one), ("M2", two))}
    winners = [m for m, t in texts.items() if "接单成功" in t]
    losers = [m for m, t in texts.items() if "已被其他人接单" in t]
    assert len(winners) == 1 and len(losers) == 1, texts
    with web_db.connect() as c:
        holder = c.execute(sa.text("SELECT assigned_member_id FROM incidents WHERE incident_id = 'INC-A'")).scalar_one()
    assert holder == winners[0]
    win, lose = (one, two) if winners[0] == "M1" else (two, one)
    lose.screenshot(path=str(SHOTS / "responder-incidents-taken-phone.png"), full_page=True)
    card = win.locator("ul.mine li[data-incident=INC-A]")
    assert "处置中" in card.inner_text()
    card.locator("summary", has_text="办结").click()
    card.locator(".close-form textarea[name=note]").fill("困难补助申请已递交民政科")
    photo = tmp_path / "result.jpg"
    photo.write_bytes(jpeg_with_gps())
    card.locator(".close-form input[name=photo]").set_input_files(str(photo))
    win.screenshot(path=str(SHOTS / "responder-incidents-close-phone.png"), full_page=False)
    card.locator(".close-form button[type=submit]").click()
    win.wait_for_load_state("networkidle")
    assert "已办结" in win.inner_text(".notice")
    assert win.locator("ul.mine li[data-incident=INC-A]").count() == 0
    win.screenshot(path=str(SHOTS / "responder-incidents-closed-phone.png"), full_page=True)
    with web_db.connect() as c:
        inc = c.execute(sa.text("SELECT status FROM incidents WHERE incident_id = 'INC-A'")).scalar_one()
        detail = c.execute(sa.text("SELECT detail FROM incident_events WHERE action = 'close'")).scalar_one()
    assert inc == "closed" and detail["note"] == "困难补助申请已递交民政科"
    assert (uploads / detail["photos"][0]["path"]).exists()
    assert errors1 == [] and errors2 == []
    ctx1.close()
    ctx2.close()
    context, desk, _ = _phone(browser, "desk")
    _login(desk, base, "resp1")
    desk.screenshot(path=str(SHOTS / "responder-incidents-desk.png"), full_page=True)
    context.close()
