"""The draft editor in Chromium: a planner tries to take cells from a locked grid and reads the refusal
naming it (nothing changes), draws a free-hand lasso with the mouse, reads the selected count, previews and
applies the move; the same at 390×844. Screenshots in /tmp/shots (planner-edit-*.png)."""

from __future__ import annotations

import math

import h3
import pytest
import shapely

from api.usecases import drafts as uc
from tests.web import test_browser
from tests.web.test_browser import SHOTS, _login, _page
from tests.store.test_drafts_locks import label_building
from tests.web.test_planner_redraw import counts, seed_c3

pytestmark = pytest.mark.browser
server = test_browser.server
browser = test_browser.browser
WAIT_MS = 20_000


def _shoot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.wait_for_timeout(400)  # the map settles before the picture
    page.screenshot(path=str(SHOTS / f"planner-edit-{name}.png"), full_page=True)


@pytest.fixture()
def draft_id(web_db):
    seed_c3(web_db)
    return uc.create_draft(web_db, "C3", uc.DraftControls(locked=("K1", "K2")), name="锁定一二网格",
                           created_by="planner1")


def _open(page, server, draft_id: int) -> None:
    _login(page, server, "planner1")
    page.goto(server + f"/planner/drafts/{draft_id}")
    page.wait_for_function("() => window.gridmapRedraw && window.gridmapRedraw.after.loaded() && "
                           "document.getElementById('redraw').dataset.ready === 'yes' && "
                           "Number(document.getElementById('redraw').dataset.cells) > 0", timeout=WAIT_MS)
    page.locator("#map-after").scroll_into_view_if_needed()


def _screen(page, lon: float, lat: float) -> tuple[float, float]:
    """Page coordinates of a WGS84 point on the after map."""
    x, y = page.evaluate(f"() => {{ const p = window.gridmapRedraw.after.project([{lon}, {lat}]); return [p.x, p.y]; }}")
    box = page.locator("#map-after").bounding_box()
    return box["x"] + x, box["y"] + y


def _lasso_target(engine, draft: dict) -> tuple[str, str]:
    """A free grid's cell with households next to another free grid (the target), away from the locks."""
    cells = uc.draft_cells(engine, draft)
    grids = draft["grids"].set_index("grid_code")
    free = sorted(set(grids.index[grids["status"] != "locked"]))
    into = free[0]
    near = cells[(cells["grid_code"].isin(free[1:])) & (cells["households"] > 0) & (cells["lon"] > 121.4745)
                 & cells.geometry.intersects(grids.geometry[into].buffer(1e-5))]
    return into, str(near.sort_values("cell")["cell"].iloc[0])


def _draw_lasso(page, centre: str, rings: float = 1.6) -> None:
    """Press, drag a 24-point loop around ``centre`` (radius ``rings`` cell spacings), release."""
    lat, lon = h3.cell_to_latlng(centre)
    n_lat, n_lon = h3.cell_to_latlng(sorted(h3.grid_ring(centre, 1))[0])
    cx, cy = _screen(page, lon, lat)
    nx, ny = _screen(page, n_lon, n_lat)
    r = rings * math.hypot(nx - cx, ny - cy)
    points = [(cx + r * math.cos(2 * math.pi * k / 24), cy + r * math.sin(2 * math.pi * k / 24)) for k in range(25)]
    page.mouse.move(*points[0])
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*p, steps=3)
    page.mouse.up()


def _lassoed_cells(page, engine, draft: dict) -> set:
    """The cells whose centres lie in the ring the page recorded (computed here, not by the page)."""
    ring = shapely.Polygon(page.evaluate("() => window.gridmapRedraw.lassoRing"))
    cells = uc.draft_cells(engine, draft)
    return {c for c, x, y in zip(cells["cell"], cells["lon"], cells["lat"]) if ring.contains(shapely.Point(x, y))}


def test_locked_cells_refused_then_lasso_preview_apply(server, browser, web_db, draft_id):
    draft = uc.open_draft(web_db, draft_id, None)
    context, page, errors = _page(browser, "desk")
    _open(page, server, draft_id)
    assert page.locator("#to-grid option[value='K1']").is_disabled()
    assert page.locator("#map-after .grid-label.locked .lock-mark").count() == 2  # K1, K2 marked on the draft
    cells = uc.draft_cells(web_db, draft)
    k2 = cells[(cells["grid_code"] == "K2") & (cells["households"] > 0)].sort_values("lat").iloc[len(cells) // 20]
    before = counts(web_db)
    page.mouse.click(*_screen(page, k2["lon"], k2["lat"]))
    page.wait_for_selector("#edit-error-box:not([hidden])", timeout=WAIT_MS)
    message = page.inner_text("#edit-error")
    assert "二网格（K2）" in message and "锁定" in message and "不能移出" in message
    assert page.is_disabled("#apply-edit")
    _shoot(page, "locked-refused-desk")
    assert counts(web_db) == before and page.inner_text("#edit-pos") == "0"
    page.click("#drop-locked")
    page.wait_for_function("() => document.getElementById('selected-count').textContent === '0' && "
                           "document.getElementById('edit-error-box').hidden", timeout=WAIT_MS)

    into, centre = _lasso_target(web_db, draft)
    page.select_option("#to-grid", into)
    page.click("#tool-lasso")
    _draw_lasso(page, centre)
    page.wait_for_selector("#preview table tbody tr", timeout=WAIT_MS)
    chosen = set(page.evaluate("() => window.gridmapRedraw.cells()"))
    expected = _lassoed_cells(page, web_db, draft)
    assert len(expected) >= 3 and chosen == expected
    assert page.inner_text("#selected-count") == str(len(expected))
    assert page.inner_text("#selected-households") == str(int(cells.set_index("cell").loc[sorted(expected), "households"].sum()))
    homes = uc.draft_households(web_db, draft)
    moving = {h for h, p in zip(homes["household_id"], homes.geometry)
              if h3.latlng_to_cell(p.y, p.x, 10) in expected and draft["assignment"][h] != into}
    assert f"将有 {len(moving)} 户换网格" in page.inner_text("#preview")
    _shoot(page, "lasso-preview-desk")
    page.click("#apply-edit")
    page.wait_for_function("() => document.getElementById('edit-pos').textContent === '1' && "
                           "document.getElementById('redraw').dataset.ready === 'yes'", timeout=WAIT_MS)
    stored = uc.open_draft(web_db, draft_id, None)
    assert moving and all(stored["assignment"][h] == into for h in moving)
    assert stored["grids"].set_index("grid_code").loc[["K1", "K2"], "status"].eq("locked").all()
    assert page.inner_text("#selected-count") == "0"
    assert [e for e in errors if "status of 422" not in e] == []  # the refused preview is the only failure
    context.close()

    context, page, errors = _page(browser, "phone")
    _open(page, server, draft_id)
    centre = _lasso_target(web_db, stored)[1]
    lat, lon = h3.cell_to_latlng(centre)
    page.evaluate(f"() => {{ const m = window.gridmapRedraw.after; m.jumpTo({{center: [{(lon + 121.468) / 2}, {lat}], "
                  "zoom: m.getZoom() + 0.6}); }")  # as a planner pinches in on a phone; the locked K2 stays in view
    page.click("#tool-lasso")
    _draw_lasso(page, centre, rings=1.2)
    page.wait_for_selector("#preview table tbody tr", timeout=WAIT_MS)
    assert int(page.inner_text("#selected-count")) >= 1
    _shoot(page, "lasso-preview-phone")
    assert errors == []
    context.close()


def test_a_building_split_by_a_click_is_listed_then_moved_whole(server, browser, web_db, draft_id):
    draft = uc.open_draft(web_db, draft_id, None)
    into = sorted(c for c in draft["grids"]["grid_code"] if c not in uc.draft_locked(draft))[0]
    cell, ids = label_building(web_db, draft, into)
    context, page, errors = _page(browser, "desk")
    _open(page, server, draft_id)
    page.select_option("#to-grid", into)
    lat, lon = h3.cell_to_latlng(cell)
    page.mouse.click(*_screen(page, lon, lat))
    page.wait_for_selector("#preview .split-box", timeout=WAIT_MS)
    warning = page.inner_text("#preview .split-box")
    assert "会把楼栋拆到不同网格" in warning and "5栋：移入" in warning and "户留在" in warning
    assert page.is_disabled("#apply-edit")  # not while a building would be split
    _shoot(page, "building-split-desk")
    page.click("#whole-buildings")
    page.wait_for_selector("#preview .ok-note", timeout=WAIT_MS)
    assert "已整栋一起移入：5栋" in page.inner_text("#preview") and page.locator("#preview .split-box").count() == 0
    page.click("#apply-edit")
    page.wait_for_function("() => document.getElementById('edit-pos').textContent === '1'", timeout=WAIT_MS)
    stored = uc.open_draft(web_db, draft_id, None)
    assert all(stored["assignment"][h] == into for h in ids) and stored["edits"][0]["whole_buildings"] is True
    assert errors == []
    context.close()
