"""The live map in a real browser: Debian's Chromium through Playwright, against a live server on PostGIS.

A test page mounts ``GridmapMap`` with a bearer token (sent by MapLibre's ``transformRequest``); the
test checks that tiles are requested and answered 200, that there are no console errors, that the
JavaScript GCJ-02 port agrees with ``geodata.crs`` to the centimetre, and screenshots the map at
390×844 and 1920×1080 into /tmp/shots/.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.db]

STATIC = Path(__file__).resolve().parents[2] / "api" / "web" / "static"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--enable-unsafe-swiftshader"]
SHOTS = Path("/tmp/shots")

PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/vendor/maplibre/maplibre-gl.css">
<style>html,body,#map{margin:0;height:100%;width:100%}</style></head>
<body><div id="map"></div>
<script src="/static/vendor/maplibre/maplibre-gl.js"></script>
<script src="/static/js/gridmap-map.js"></script>
<script>
  window.gridmap = GridmapMap.mount(document.getElementById('map'),
    {layers: window.TEST_LAYERS, basemap: window.TEST_BASEMAP || 'none', bounds: window.TEST_BOUNDS,
     token: window.TEST_TOKEN, deferLayers: window.TEST_DEFER === true});
</script></body></html>"""


@functools.lru_cache(maxsize=1)
def _layers():
    from geodata.io import normalise
    from geodata.synth import synth_city

    c = synth_city(3000, seed=3, households_per_grid=60)
    return {layer: normalise(c[layer], layer) for layer in
            ("streets", "communities", "grids", "households", "members", "service_centres")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def live(engine, db_url):
    """A uvicorn server on a free port serving the app, /static and the test page; yields its base URL."""
    import uvicorn
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    from api.app import create_app
    from api.auth import public
    from api.guards import DEFAULT_CSP
    from geodata.store.importer import import_layer

    layers = _layers()
    for layer, gdf in layers.items():
        import_layer(engine, layer, gdf)
    app = create_app(db_url)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")  # until the page shell mounts it

    @app.get("/test-map", include_in_schema=False)
    @public
    def test_map():
        # a page with the Amap base map must let MapLibre fetch Amap's raster tiles (connect-src)
        return HTMLResponse(PAGE, headers={"Content-Security-Policy": DEFAULT_CSP.replace(
            "connect-src 'self'", "connect-src 'self' https://*.is.autonavi.com")})

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{port}", "engine": engine, "bounds": [float(v) for v in layers["grids"].total_bounds]}
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _blank_png() -> bytes:
    """A 1×1 transparent PNG, answered for base-map tiles so tests need no internet."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00\x00")) + chunk(b"IEND", b""))


BLANK_PNG = _blank_png()


def _open_map(browser, live, token, size, layers=None, basemap="none"):
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.route("**/*autonavi.com/**", lambda route: route.fulfill(status=200, content_type="image/png", body=BLANK_PNG))
    errors, tiles = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: tiles.append((r.url, r.status)) if "/tiles/" in r.url else None)
    page.add_init_script(f"window.TEST_TOKEN = {token!r}; window.TEST_BOUNDS = {live['bounds']!r};"
                         f"window.TEST_LAYERS = {layers or None!r}; window.TEST_BASEMAP = {basemap!r};"
                         .replace("None", "undefined"))
    page.goto(live["url"] + "/test-map")
    page.wait_for_function("() => window.gridmap && window.gridmap.map.loaded() && window.gridmap.map.areTilesLoaded()",
                           timeout=60_000)
    page.wait_for_timeout(300)
    return page, errors, tiles


def test_map_draws_tiles_with_a_bearer_token(live, browser):
    from geodata.store import auth as store

    _, token = store.create_token(live["engine"], "leader", ["*"])
    SHOTS.mkdir(exist_ok=True)
    for size in ((390, 844), (1920, 1080)):
        page, errors, tiles = _open_map(browser, live, token, size)
        assert tiles, "no tile requested"
        assert any(status == 200 for _, status in tiles)
        assert all(status in (200, 204) for _, status in tiles), [t for t in tiles if t[1] not in (200, 204)]
        assert {u.split("/tiles/")[1].split("/")[0] for u, s in tiles if s == 200} >= {"grids", "households"}
        assert errors == []
        legend = page.locator(".gridmap-legend")
        assert legend.inner_text().startswith("图例")
        # folded on a phone (it covered a third of the map), open on a desk screen; a tap toggles it
        phone = size[0] < 600
        assert legend.evaluate("e => e.open") is (not phone)
        folded_h = legend.bounding_box()["height"]
        page.screenshot(path=str(SHOTS / f"map-{size[0]}x{size[1]}.png"))
        if phone:
            assert folded_h < 0.05 * size[1]
            page.locator(".gridmap-legend summary").click()
            assert legend.evaluate("e => e.open") and legend.bounding_box()["height"] > 3 * folded_h
            page.screenshot(path=str(SHOTS / f"map-{size[0]}x{size[1]}-legend-open.png"))
        page.close()


def test_map_without_a_valid_token_gets_no_tiles(live, browser):
    page, _errors, tiles = _open_map(browser, live, "gm_not-a-token", (800, 600), ["grids"])
    assert tiles and all(status == 401 for _, status in tiles)
    page.close()


def test_js_gcj02_port_agrees_with_python_to_the_centimetre(live, browser):
    from geodata.crs import wgs84_to_gcj02
    from gridmap.metric import haversine_m

    rng = np.random.default_rng(7)
    lon = np.concatenate([rng.uniform(73.5, 135, 2500), rng.uniform(119.9, 120.4, 500), [10.0, 140.0]])
    lat = np.concatenate([rng.uniform(4, 53.5, 2500), rng.uniform(30.0, 30.5, 500), [50.0, 20.0]])
    page = browser.new_page()
    page.goto(live["url"] + "/static/js/gridmap-map.js")  # same origin; then load the script into a blank page
    page.set_content("<html><body></body></html>")
    page.add_script_tag(url=live["url"] + "/static/js/gridmap-map.js")
    got = np.array(page.evaluate("pts => pts.map(p => GridmapMap.wgs84ToGcj02(p[0], p[1]))",
                                 np.column_stack([lon, lat]).tolist()))
    want_lon, want_lat = wgs84_to_gcj02(lon, lat)
    err_m = haversine_m(got[:, 0], got[:, 1], want_lon, want_lat)
    assert float(np.max(err_m)) < 0.01
    assert got[-2].tolist() == [10.0, 50.0]  # outside China: unchanged
    page.close()


def _label_positions(page) -> list[tuple[str, float, float]]:
    """(text, lon, lat) of every grid label marker, in the map's own coordinates."""
    return page.evaluate("""() => {
      const map = window.gridmap.map, box = map.getContainer().getBoundingClientRect();
      return [...document.querySelectorAll('.gridmap-label')].map(e => {
        const r = e.getBoundingClientRect();
        const p = map.unproject([r.left + r.width / 2 - box.left, r.top + r.height / 2 - box.top]);
        return [e.textContent, p.lng, p.lat];
      });
    }""")


def test_amap_mode_asks_for_gcj02_tiles_and_labels_follow_the_shift(live, browser):
    """With the Amap base map every tile is asked in GCJ-02, and grid labels land inside the GCJ-02
    outline of their grid (the WGS84 one lies ~500 m away)."""
    import shapely

    from geodata.crs import geodataframe_from_wgs84
    from geodata.store import auth as store

    _, token = store.create_token(live["engine"], "leader", ["*"])
    grids = _layers()["grids"]
    shifted = geodataframe_from_wgs84(grids, "gcj02")
    by_name = {n: i for i, n in enumerate(grids["name"])}
    for basemap, outlines in (("amap", shifted), ("none", grids)):
        page, errors, tiles = _open_map(browser, live, token, (1280, 900), ["grids"], basemap)
        centre = outlines.geometry.iloc[0].representative_point()
        page.evaluate(f"window.gridmap.map.jumpTo({{center: [{centre.x}, {centre.y}], zoom: 15}})")
        page.wait_for_function("() => window.gridmap.map.areTilesLoaded() && "
                               "document.querySelectorAll('.gridmap-label').length > 0", timeout=60_000)
        page.wait_for_timeout(300)
        labels = _label_positions(page)
        assert labels and errors == []
        asked = [u for u, s in tiles if s == 200]
        assert asked and all(("coords=gcj02" in u) is (basemap == "amap") for u in asked)
        for name, lon, lat in labels:
            i = by_name[name]
            assert outlines.geometry.iloc[i].buffer(1e-5).contains(shapely.Point(lon, lat)), (basemap, name)
        page.close()


#: The test page's map, switched (incidents off, gaps on) as soon as its style is in — before any tile arrives.
_SWITCH_EARLY = """
Object.defineProperty(window, 'gridmap', {configurable: true, get() { return window._gm; }, set(v) {
  window._gm = v;
  v.map.once('styledata', () => {  // as the leaders' page applies its switches at style.load
    v.map.setLayoutProperty('incidents-0', 'visibility', 'none');
    v.map.setLayoutProperty('gaps-0', 'visibility', 'visible');  // still waits for the grids
  });
}});"""


def test_deferred_layers_wait_for_the_first_frame_of_grids_and_keep_a_switch(live, browser):
    """deferLayers: no other layer's tile is asked for before the first frame of grids (the
    ``gridmap-first-frame`` mark the leaders' bench reads); then the layers appear, except one switched off
    meanwhile."""
    from geodata.store import auth as store

    _, token = store.create_token(live["engine"], "leader", ["*"])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    tiles: list = []  # MapLibre fetches tiles in workers: the page's resource timings do not list them
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfinished", lambda r: tiles.append(r) if "/tiles/" in r.url else None)
    page.add_init_script(f"window.TEST_TOKEN = {token!r}; window.TEST_BOUNDS = {live['bounds']!r};"
                         "window.TEST_LAYERS = ['grids', 'gaps', 'centres', 'incidents']; window.TEST_DEFER = true;"
                         + _SWITCH_EARLY)
    page.goto(live["url"] + "/test-map")
    page.wait_for_function("() => performance.getEntriesByName('gridmap-first-frame').length > 0", timeout=60_000)
    for _ in range(600):
        if any("/tiles/centres/" in r.url for r in tiles):
            break
        page.wait_for_timeout(100)
    frame = page.evaluate("() => performance.timeOrigin + performance.getEntriesByName('gridmap-first-frame')[0].startTime")
    started = [(r.url.split("/tiles/")[1].split("/")[0], r.timing["startTime"]) for r in tiles]  # epoch ms
    assert min(t for layer, t in started if layer == "grids") < frame
    others = [(layer, t) for layer, t in started if layer != "grids"]
    assert others and all(t >= frame for _, t in others), (frame, started)
    assert not any(layer == "incidents" for layer, _ in others)  # switched off before it was shown
    visibility = page.evaluate("() => ['gaps-0', 'centres-0', 'incidents-0'].map("
                               "id => window.gridmap.map.getLayoutProperty(id, 'visibility'))")
    assert visibility == ["visible", "visible", "none"]
    assert errors == []
    page.close()
