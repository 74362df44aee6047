"""The planners' pages in Chromium at 1920×1080 (and 390×844 screenshots): upload a roster with five planted
mistakes, see exactly those five Excel rows, fix and import; the staffing table sorts."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from api.settings import get_settings
from tests.geodata.test_roster_check import plant_five, planted_workbook
from tests.web import test_browser
from tests.web.test_browser import SHOTS, _login, _page
from tests.web.test_planner import _rows_in_c1

pytestmark = pytest.mark.browser
server = test_browser.server  # the shared fixtures: uvicorn in a thread, Debian Chromium
browser = test_browser.browser


@pytest.fixture(autouse=True)
def upload_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDMAP_UPLOAD_DIR", str(tmp_path / "uploads"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _shoot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"planner-{name}.png"), full_page=True)


def _first_grid(page) -> str:
    return page.locator("table.staffing tbody tr").first.get_attribute("data-grid")


def _submit_upload(page, base, path) -> None:
    page.goto(base + "/planner/upload")
    page.set_input_files("input[type=file]", str(path))
    page.select_option("select[name=layer]", "households")
    page.click("form.upload button[type=submit]")
    page.wait_for_load_state("networkidle")


def test_five_planted_mistakes_then_fixed_import(server, browser, web_db, tmp_path):
    context, page, errors = _page(browser, "desk")
    _login(page, server, "planner1")
    rows = _rows_in_c1()
    expected = plant_five(rows)
    bad = tmp_path / "住户花名册.xlsx"
    planted_workbook(bad, rows)
    _submit_upload(page, server, bad)
    _shoot(page, "upload-problems-desk")
    cells = page.locator("table.issues tbody tr").evaluate_all(
        "rows => rows.map(r => [r.cells[0].textContent.trim(), r.cells[1].textContent.trim()])")
    assert {int(r): h for r, h in cells} == expected and len(cells) == 5
    assert page.locator("form[action$='/import']").count() == 0  # nothing to import while problems remain

    good = tmp_path / "住户花名册-改好.xlsx"
    planted_workbook(good, _rows_in_c1())
    _submit_upload(page, server, good)
    _shoot(page, "upload-ok-desk")
    page.click("form[action$='/import'] button")
    page.wait_for_load_state("networkidle")
    _shoot(page, "imported-desk")
    assert page.inner_text("[data-count=inserted]") == "8"
    with web_db.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM households WHERE household_id LIKE 'H0%'")).scalar_one() == 8
    assert errors == []
    context.close()


def test_staffing_table_sorts_and_screens(server, browser, web_db):
    for size in ("desk", "phone"):
        context, page, errors = _page(browser, size)
        _login(page, server, "planner1")
        page.goto(server + "/planner/grids")
        assert _first_grid(page) == "G1"
        page.click("table.staffing th:nth-child(4)")  # 住户数 ascending: G2 (0) first
        assert _first_grid(page) == "G2"
        page.click("table.staffing th:nth-child(4)")
        assert _first_grid(page) == "G1"
        _shoot(page, f"grids-{size}")
        page.goto(server + "/planner/upload")
        _shoot(page, f"upload-{size}")
        page.goto(server + "/planner")
        _shoot(page, f"home-{size}")
        assert errors == []
        context.close()
