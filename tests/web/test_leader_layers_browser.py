"""The leader map's own layers in Chromium (Playwright, Debian's Chromium, SwiftShader WebGL): heat,
centres with circles and proposed sites are requested (200) and drawn, their switches hide them, the heat
follows the page's window, the weekly reports list downloads a report, and on a phone no table scrolls
sideways. Screenshots at 390×844 and 1920×1080 go to /tmp/shots/leaderfeat-*.png."""

from __future__ import annotations

from datetime import date

import pytest

from tests.web.test_browser import SHOTS, SIZES, _login, server  # noqa: F401 (fixture)
from tests.web.test_leader import incidents  # noqa: F401 (fixture)
from tests.web.test_leader_browser import browser  # noqa: F401 (fixture)
from tests.web.test_leader_layers import layered  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser

LAYER_PATHS = ("/leader/layers/heat.geojson", "/leader/layers/centres.geojson", "/leader/layers/sites.geojson")


def _open(browser, base, size):  # noqa: F811
    w, h = SIZES[size]
    context = browser.new_context(viewport={"width": w, "height": h}, locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    answered: dict[str, int] = {}
    page.on("response", lambda r: answered.__setitem__(r.url.split("?")[0].split(base)[-1], r.status))
    _login(page, base, "leader1")
    return context, page, errors, answered


def _ready(page, name):
    page.wait_for_function(f"() => document.querySelector('#leader-map').dataset.{name}Features !== undefined")


def _visibility(page, layer):
    return page.evaluate(f"() => document.querySelector('#leader-map').gridmapMap.getLayoutProperty('{layer}', "
                         f"'visibility') || 'visible'")


@pytest.fixture()
def weekly(layered, tmp_path):  # noqa: F811
    from api.usecases.audit import SYSTEM, job_detail
    from api.usecases.weekly_reports import write_weekly_reports

    write_weekly_reports(layered, tmp_path, today=date(2026, 11, 25), audit=(SYSTEM, job_detail(None, "test")))
    return layered


def test_layers_draw_switch_and_follow_the_window(server, browser, weekly):  # noqa: F811
    SHOTS.mkdir(exist_ok=True)
    for size in SIZES:
        context, page, errors, answered = _open(browser, server, size)
        page.goto(server + "/leader?region=S1")
        page.wait_for_selector("#leader-map.mounted canvas")
        _ready(page, "heat")
        _ready(page, "centres")
        assert page.get_attribute("#leader-map", "data-heat-incidents") == "4"
        page.check("#map-layers input[value=sites]")
        _ready(page, "sites")
        assert {p: answered.get(p) for p in LAYER_PATHS} == {p: 200 for p in LAYER_PATHS}
        assert "可新覆盖 3 户" in page.inner_text("[data-legend=sites]")
        assert "直线 1,000 米" in page.inner_text("[data-legend=centres]")
        assert page.inner_text("#leader-map .site-label").startswith("建议1")
        for layer in ("l-heat", "l-centres-pt", "l-centres-line", "l-sites-pt"):  # drawn, not only added
            page.wait_for_function(f"() => document.querySelector('#leader-map').gridmapMap"
                                   f".queryRenderedFeatures({{layers: ['{layer}']}}).length > 0")
        page.screenshot(path=str(SHOTS / f"leaderfeat-map-{size}.png"), full_page=True)
        for box, layer in (("heat", "l-heat"), ("centres", "l-centres-line"), ("sites", "l-sites-pt")):
            assert _visibility(page, layer) == "visible"
            page.uncheck(f"#map-layers input[value={box}]")
            assert _visibility(page, layer) == "none"
            assert page.is_hidden(f"[data-legend={box}]")
        # the window form: only 2020 → the heat is re-read for that window
        page.fill("input[name=from]", "2020-01-01")
        page.fill("input[name=to]", "2020-12-31")
        page.click("form.window button[type=submit]")
        page.wait_for_load_state("networkidle")
        _ready(page, "heat")
        assert page.get_attribute("#leader-map", "data-heat-incidents") == "1"
        assert "2020-01-01 至 2020-12-31" in page.inner_text("[data-legend=heat]")
        assert errors == [], errors
        context.close()


def test_reports_list_downloads_and_phone_tables_do_not_scroll_sideways(server, browser, weekly):  # noqa: F811
    context, page, errors, _ = _open(browser, server, "phone")
    page.goto(server + "/leader?region=S1")
    page.wait_for_selector("#leader-map.mounted canvas")
    link = page.locator("#weekly a[data-report]")
    assert "2026-11-16 至 2026-11-22" in link.inner_text()
    with page.expect_download() as download:
        link.click()
    path = SHOTS / "leaderfeat-weekly.xlsx"
    download.value.save_as(str(path))
    assert path.read_bytes()[:2] == b"PK"  # an XLSX (zip) file
    wide = page.evaluate("() => Array.from(document.querySelectorAll('table.tbl')).filter(t => t.offsetParent)"
                         ".map(t => t.scrollWidth - t.parentElement.clientWidth).filter(d => d > 1)")
    assert wide == []
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    assert page.get_attribute("#member-table td.title", "data-label") == "党员"
    page.screenshot(path=str(SHOTS / "leaderfeat-tables-phone.png"), full_page=True)
    assert errors == [], errors
    context.close()


def test_amap_base_map_asks_every_own_layer_in_gcj02(server, browser, layered):  # noqa: F811
    context, page, _, _ = _open(browser, server, "desk")  # offline: the Amap raster tiles themselves fail
    context.add_cookies([{"name": "gridmap_basemap", "value": "amap", "url": server}])
    asked: list[tuple[str, int]] = []
    page.on("response", lambda r: asked.append((r.url, r.status)) if "/leader/layers/" in r.url else None)
    page.goto(server + "/leader?region=S1")
    page.wait_for_selector("#leader-map.mounted canvas")
    page.check("#map-layers input[value=sites]")
    for name in ("heat", "centres", "sites"):
        _ready(page, name)
    assert page.get_attribute("#leader-map", "data-basemap") == "amap"
    assert len(asked) == 3 and all("coords=gcj02" in url and status == 200 for url, status in asked), asked
    context.close()
