"""The public 先锋地图: /pioneers and /pioneers/map.geojson without login show posts, skills and served grids,
a name only where the member chose so, and never a home point, phone or hidden name; in Chromium at 390×844."""

from __future__ import annotations

import json

import pytest

from tests.store.test_needs import add_members
from tests.store.test_posts import write_posts

pytestmark = pytest.mark.db

HIDDEN = ("赵M3", "赵M4", "王五", "13900000000", "member_id", "121.483", "121.499", "31.2055", "31.209")


@pytest.fixture()
def posts_db(web_db, tmp_path):
    from api.usecases.needs import import_posts

    add_members(web_db)
    import_posts(web_db, write_posts(tmp_path))
    return web_db


def test_public_page_and_geojson_show_chosen_names_only(client, posts_db):
    page = client.get("/pioneers")
    assert page.status_code == 200
    for word in ("先锋地图", "法律咨询岗", "党员 赵M2", "社区卫生服务点", "医疗", "第二网格（G2）", "中山社区"):
        assert word in page.text
    data = client.get("/pioneers/map.geojson")
    assert data.status_code == 200 and data.headers["content-type"].startswith("application/geo+json")
    body = data.json()
    posts = {f["properties"]["post_id"]: f for f in body["features"] if f["properties"]["layer"] == "post"}
    assert posts["P1"]["properties"]["name"] == "赵M2" and posts["P2"]["properties"]["name"] is None
    assert posts["P1"]["geometry"]["coordinates"] == [121.485, 31.207]
    grids = [f["properties"]["grid_code"] for f in body["features"] if f["properties"]["layer"] == "grid"]
    assert grids == ["G1", "G2"]
    for hidden in HIDDEN:
        assert hidden not in page.text and hidden not in json.dumps(body, ensure_ascii=False)


def test_import_is_audited_and_a_bad_file_changes_nothing(posts_db, tmp_path):
    import sqlalchemy as sa

    from api.usecases.needs import import_posts
    from geodata.errors import InputError
    from tests.store.test_posts import POSTS, post_rows

    with posts_db.connect() as c:
        audit = c.execute(sa.text("SELECT ids FROM audit_log WHERE what = 'posts' AND action = 'import'")).all()
    assert audit == [(["P1", "P2"],)]
    before = post_rows(posts_db)
    with pytest.raises(InputError):
        import_posts(posts_db, write_posts(tmp_path, [dict(POSTS[0], grid_code="NOPE")], name="bad.geojson"))
    assert post_rows(posts_db) == before


@pytest.mark.browser
def test_pioneers_on_a_phone(posts_db, db_url, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.web.test_browser import ARGS, CHROMIUM, SHOTS, SIZES

    with _serve(db_url, tmp_path) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS + ["--enable-unsafe-swiftshader"])
        w, h = SIZES["phone"]
        page = browser.new_context(viewport={"width": w, "height": h}, locale="zh-CN").new_page()
        errors, asked = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: asked.append(r.url))
        page.goto(base + "/pioneers")
        page.wait_for_selector("#pioneers-map[data-ready='1']", timeout=20000)
        page.wait_for_timeout(500)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= w  # nothing cut off sideways
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "pioneers-phone.png"), full_page=True)
        h2, w2 = SIZES["desk"][1], SIZES["desk"][0]
        page.set_viewport_size({"width": w2, "height": h2})
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / "pioneers-desk.png"))
        browser.close()
    assert errors == []
    assert [u for u in asked if not (u.startswith((base, "blob:", "data:")))] == []  # offline
    assert not any("/tiles/" in u for u in asked)


def _serve(db_url, tmp_path):
    import contextlib
    import socket
    import threading
    import time

    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    @contextlib.contextmanager
    def run():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        srv = uvicorn.Server(uvicorn.Config(create_app(Settings(database_url=db_url, upload_dir=tmp_path)),
                                            host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        while not srv.started:
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            srv.should_exit = True
            thread.join()

    return run()
