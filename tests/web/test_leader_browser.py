"""The leaders' page in Chromium (Playwright, Debian's Chromium, SwiftShader WebGL): the map mounts and
draws grid tiles, the layer switches hide layers, drill-down works, no console errors. Screenshots at
390×844 and 1920×1080 go to /tmp/shots/leader-*.png."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.web.test_browser import SHOTS, SIZES, _login, server  # noqa: F401 (fixture)
from tests.web.test_leader import incidents  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--enable-unsafe-swiftshader"]


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser, base, size):
    w, h = SIZES[size]
    context = browser.new_context(viewport={"width": w, "height": h}, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    tiles: list[str] = []
    page.on("response", lambda r: tiles.append(r.url) if "/tiles/grids/" in r.url and r.ok else None)
    _login(page, base, "leader1")
    return context, page, errors, tiles


def test_leader_page_map_switches_and_drill_down(server, browser, incidents):  # noqa: F811
    SHOTS.mkdir(exist_ok=True)
    for size in SIZES:
        context, page, errors, tiles = _open(browser, server, size)
        assert page.url == server + "/leader"
        page.wait_for_selector("#leader-map.mounted canvas")
        page.wait_for_function("() => document.querySelector('#leader-map canvas').width > 0")
        page.wait_for_timeout(1500)
        assert tiles, "no grid tile was drawn"
        assert "外滩街道" in page.inner_text("h1")
        assert "中山社区" in page.inner_text("#leader-map .community-label")  # named on the map, not only on hover
        page.screenshot(path=str(SHOTS / f"leader-street-{size}.png"), full_page=True)
        page.uncheck("#map-layers input[value=incidents]")
        page.select_option("#grid-colour", "coverage")
        page.click("#children a")  # drill down to the community
        page.wait_for_load_state("networkidle")
        assert "region=C1" in page.url and "中山社区" in page.inner_text("h1")
        page.screenshot(path=str(SHOTS / f"leader-community-{size}.png"), full_page=True)
        assert errors == [], errors
        context.close()


def test_pdf_report_has_map_page_and_tables(server, browser, incidents):  # noqa: F811
    import subprocess

    context, page, errors, _ = _open(browser, server, "desk")
    with page.expect_download(timeout=60_000) as download:
        page.evaluate("window.location.href = '/leader/report.pdf?region=S1'")
    path = SHOTS / "leader-report.pdf"
    download.value.save_as(str(path))
    pdf = path.read_bytes()
    assert pdf.startswith(b"%PDF")
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    width, height = map(float, re.search(r"Page size: +([\d.]+) x ([\d.]+)", info).groups())
    assert "(A4)" in info and width > height, info  # A4 landscape
    pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    assert pages >= 2
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(path), str(SHOTS / "leader-report")], check=True)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    for words in ("外滩街道", "中山社区", "北", "第一网格", "数据来源", "受理率", "空白网格"):
        assert words in text, words
    assert errors == [], errors
    context.close()


def test_print_view_draws_only_the_printed_layers_before_it_is_ready(server, browser, incidents):  # noqa: F811
    """The print view asks for grids and service centres only (no incident heat of all time, no gap cells),
    and marks itself ready once those are drawn and copied for print: a snapshot of the map, labels, scale."""
    context, page, _, _ = _open(browser, server, "desk")
    asked: list[str] = []
    failed: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/tiles/" in r.url else None)
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("pageerror", lambda e: failed.append(str(e)))
    page.goto(server + "/leader/print?region=S1", wait_until="load")
    page.wait_for_selector("body[data-map-ready='1']", state="attached", timeout=60_000)
    layers = {re.search(r"/tiles/([a-z_]+)/", u).group(1) for u in asked}
    assert "grids" in layers and layers <= {"grids", "centres"}, layers
    snapshot = page.locator("#print-map img.map-snapshot")
    assert snapshot.count() == 1 and snapshot.get_attribute("src").startswith("data:image/png")
    assert "中山社区" in page.inner_text("#print-map")  # community label
    assert page.locator("#print-map .maplibregl-ctrl-scale").count() == 1
    assert "网格" in page.inner_text("#print-map .gridmap-legend")
    assert failed == [], failed
    context.close()


def _session(base: str, username: str):
    import httpx

    from tests.web.conftest import PASSWORD, csrf_from

    client = httpx.Client(base_url=base, timeout=120)
    page = client.get("/login")
    client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf_from(page.text)})
    return client


def test_pdf_builds_the_leader_view_once_and_refuses_other_regions(server, incidents, monkeypatch):  # noqa: F811
    """One PDF, one leader view: Chromium is handed the print view built for the permission check (the
    server is not asked for /leader/print). A leader of another region, and a region that does not exist,
    get the same 404 without a view being built or a browser started."""
    import subprocess
    from contextlib import closing

    import api.usecases.leader as usecase

    built: list[str] = []
    real = usecase.leader_view
    monkeypatch.setattr(usecase, "leader_view", lambda engine, principal, region, **kw: (
        built.append(region), real(engine, principal, region, **kw))[1])
    with closing(_session(server, "leader1")) as own:
        response = own.get("/leader/report.pdf", params={"region": "S1"})
        assert response.status_code == 200 and response.content.startswith(b"%PDF")
        assert built == ["S1"]
        text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=response.content, capture_output=True,
                              check=True).stdout.decode()
        assert "外滩街道" in text and "第一网格" in text and "受理率" in text
    with closing(_session(server, "leader2")) as other:
        refused = other.get("/leader/report.pdf", params={"region": "S1"})
        missing = other.get("/leader/report.pdf", params={"region": "S404"})
    assert refused.status_code == missing.status_code == 404 and refused.text == missing.text
    assert built == ["S1"]


def _legend(page, where: str = "#leader-map .gridmap-legend") -> str:
    """The legend as the user reads it (rows taken off the map are not rendered, so not in innerText)."""
    return page.inner_text(where) if page.locator(where).is_visible() else ""


def test_map_legend_follows_the_layer_switches(server, browser, incidents):  # noqa: F811
    """Incident points are off by default: no incident lights in the legend until they are switched on; gap
    cells and grids leave the legend when switched off; the page's own rows (heat, sites, incident points)
    follow their switches; colouring grids by coverage gives the coverage legend. The printout's legend
    names exactly the printed layers (grids and service centres)."""
    context, page, errors, _ = _open(browser, server, "desk")
    page.wait_for_selector("#leader-map.mounted canvas")
    page.wait_for_function("() => document.querySelector('#leader-map').dataset.heatFeatures !== undefined")
    shown = _legend(page)
    assert "空白网格" in shown and "未联户" in shown and "红灯" not in shown, shown
    assert not page.is_visible("#leader-legend [data-legend=incidents]")
    assert not page.is_visible("#leader-legend [data-legend=sites]")
    assert page.is_visible("#leader-legend [data-legend=heat]")
    page.check("#map-layers input[value=incidents]")
    shown = _legend(page)
    assert "事件·红灯（超时）" in shown and "事件·绿灯（按时）" in shown, shown
    assert page.is_visible("#leader-legend [data-legend=incidents]")
    page.uncheck("#map-layers input[value=gaps]")
    page.uncheck("#map-layers input[value=heat]")
    page.check("#map-layers input[value=sites]")
    shown = _legend(page)
    assert "未联户" not in shown and "红灯" in shown, shown
    assert not page.is_visible("#leader-legend [data-legend=heat]")
    assert page.is_visible("#leader-legend [data-legend=sites]")
    page.select_option("#grid-colour", "coverage")
    shown = _legend(page)
    assert "网格联户率 100%" in shown and "空白网格" not in shown, shown
    page.uncheck("#map-layers input[value=grids]")
    page.uncheck("#map-layers input[value=incidents]")
    assert _legend(page) == ""  # nothing of the tiles is drawn: no legend box at all
    page.check("#map-layers input[value=incidents]")
    shown = _legend(page)
    assert "红灯" in shown and "网格" not in shown.replace("事件", ""), shown
    assert errors == [], errors

    page.goto(server + "/leader/print?region=S1", wait_until="load")
    page.wait_for_selector("body[data-map-ready='1']", state="attached", timeout=60_000)
    printed = _legend(page, "#print-map .gridmap-legend")
    assert "空白网格" in printed and "党群服务中心" in printed, printed
    assert "红灯" not in printed and "未联户" not in printed and "住户" not in printed, printed
    context.close()
