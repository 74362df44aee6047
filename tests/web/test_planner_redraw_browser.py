"""Redraw in Chromium at 1920×1080 (and 390×844 screenshots), with a real worker: lock two grids, run the
redraw as a background job, move an H3 cell by hand, undo, redo, commit; then every household lies in a
grid that contains it and the locked grids are unchanged."""

from __future__ import annotations

import os
import signal

import pytest
import sqlalchemy as sa

from api.usecases import drafts as uc
from tests.web import test_browser
from tests.web.test_browser import SHOTS, _login, _page
from tests.web.test_jobs import _start_worker
from tests.web.test_planner_redraw import boundary_cell, seed_c3

pytestmark = pytest.mark.browser
server = test_browser.server  # the shared fixtures: uvicorn in a thread, Debian Chromium
browser = test_browser.browser
WAIT_MS = 120_000


def _shoot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"planner-redraw-{name}.png"), full_page=True)


@pytest.fixture()
def worker(web_db, db_url):
    proc = _start_worker(db_url)
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


def _wkb(engine, codes) -> dict:
    with engine.connect() as c:
        return dict(c.execute(sa.text("SELECT grid_code, ST_AsBinary(geom) FROM grids WHERE grid_code = ANY(:c)"),
                              {"c": list(codes)}).all())


def _wait_edit_pos(page, n: int) -> None:
    page.wait_for_function(f"() => document.getElementById('edit-pos').textContent === '{n}' && "
                           "document.getElementById('redraw').dataset.ready === 'yes'", timeout=WAIT_MS)


def _click_cell(page, engine, draft_id: int, into: str) -> set:
    """Click one boundary cell on the after map; returns the households it holds (the draft's view)."""
    draft = uc.open_draft(engine, draft_id, None)
    cell = boundary_cell(engine, draft, into)
    import h3

    lat, lon = h3.cell_to_latlng(cell)
    page.wait_for_function("() => window.gridmapRedraw && window.gridmapRedraw.after.loaded() && "
                           "Number(document.getElementById('redraw').dataset.cells) > 0", timeout=WAIT_MS)
    x, y = page.evaluate(f"() => {{ const p = window.gridmapRedraw.after.project([{lon}, {lat}]); return [p.x, p.y]; }}")
    box = page.locator("#map-after").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_selector("#preview table tbody tr", timeout=WAIT_MS)
    homes = uc.draft_households(engine, draft)
    return {h for h, p in zip(homes["household_id"], homes.geometry) if h3.latlng_to_cell(p.y, p.x, 10) == cell
            and homes.set_index("household_id").loc[h, "grid_code"] != into}


def test_lock_redraw_move_undo_redo_commit(server, browser, web_db, worker):
    seed_c3(web_db)
    locked_before = _wkb(web_db, ["K1", "K2"])
    context, page, errors = _page(browser, "desk")
    _login(page, server, "planner1")
    page.goto(server + "/planner/redraw?community=C3")
    page.check("#lock-K1")
    page.check("#lock-K2")
    page.fill("input[name=name]", "锁定一二网格")
    _shoot(page, "form-desk")
    page.click("form.redraw-controls button[type=submit]")
    page.wait_for_selector("a.open-draft", timeout=WAIT_MS)  # the job page polls until the worker is done
    _shoot(page, "job-desk")
    page.click("a.open-draft")
    page.wait_for_function("() => document.getElementById('redraw').dataset.ready === 'yes'", timeout=WAIT_MS)
    draft_id = int(page.get_attribute("#redraw", "data-draft"))
    draft = uc.open_draft(web_db, draft_id, None)
    assert set(draft["grids"].loc[draft["grids"]["status"] == "locked", "grid_code"]) == {"K1", "K2"}
    into = sorted(c for c in draft["grids"]["grid_code"] if c.startswith("C3"))[0]

    page.select_option("#to-grid", into)
    moving = _click_cell(page, web_db, draft_id, into)
    assert moving and page.inner_text("#selected-count") == "1"
    page.wait_for_timeout(500)  # the map settles before the picture
    _shoot(page, "draft-preview-desk")
    page.click("#apply-edit")
    _wait_edit_pos(page, 1)
    assert all(uc.open_draft(web_db, draft_id, None)["assignment"][h] == into for h in moving)
    page.click("#undo")
    _wait_edit_pos(page, 0)
    assert not any(uc.open_draft(web_db, draft_id, None)["assignment"][h] == into for h in moving)
    page.reload()  # the stack is kept with the draft
    page.wait_for_function("() => document.getElementById('redraw').dataset.ready === 'yes'", timeout=WAIT_MS)
    assert page.inner_text("#edit-count") == "1" and page.is_enabled("#redo")
    page.click("#redo")
    _wait_edit_pos(page, 1)
    edited = uc.open_draft(web_db, draft_id, None)["grids"].set_index("grid_code")
    row = page.locator(f"table.draft-grids tr[data-grid='{into}']")  # the table follows the edit
    assert row.locator("td").nth(1).inner_text() == str(edited.loc[into, "households"])
    assert "手工调整" in row.inner_text()
    page.wait_for_timeout(500)
    _shoot(page, "draft-edited-desk")

    page.click("form.commit-form button[type=submit]")
    page.wait_for_selector("section.committed")
    _shoot(page, "committed-desk")
    with web_db.connect() as c:
        outside = c.execute(sa.text(
            "SELECT count(*) FROM households h LEFT JOIN grids g ON g.grid_code = h.grid_code "
            "WHERE h.household_id LIKE 'K%' AND (g.grid_code IS NULL OR NOT ST_Covers(g.geom, h.geom))")).scalar_one()
        moved_to = {r[0] for r in c.execute(sa.text("SELECT DISTINCT grid_code FROM households "
                                                     "WHERE household_id = ANY(:h)"), {"h": sorted(moving)})}
    assert outside == 0 and moved_to == {into}
    assert _wkb(web_db, ["K1", "K2"]) == locked_before
    assert errors == []
    context.close()

    context, page, errors = _page(browser, "phone")  # the same pages on a phone: screenshots to look at
    _login(page, server, "planner1")
    page.goto(server + "/planner/redraw?community=C3")
    _shoot(page, "form-phone")
    page.goto(server + f"/planner/drafts/{draft_id}")
    page.wait_for_function("() => document.getElementById('redraw').dataset.ready === 'yes'", timeout=WAIT_MS)
    page.wait_for_timeout(500)
    _shoot(page, "draft-phone")
    assert errors == []
    context.close()
