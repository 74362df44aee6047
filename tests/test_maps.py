"""Maps: tiles and the Amap (GCJ-02) shift, escaping, each map on real Hangzhou grids in headless
Chromium (no JS errors, not blank), the CLI, the plan step and ``GET /maps/{kind}``."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import sqlalchemy as sa
from typer.testing import CliRunner

from api.usecases.maps import MapOptions, build_map, incident_lights
from geodata.io import read_layer, write_layer
from geodata.synth import synth_in_grids
from gridmap import census, coverage
from maps.base import MapError, check_tiles, new_canvas, page_html, save_html
from maps.coverage import CLASSES, coverage_map, grid_class
from maps.incidents import incident_map
from maps.links import links_map
from maps.redraw import redraw_map
from maps.service import coarsen_cells, service_map

# Reference pair of the widely used coordtransform library (wgs84togcj02(116.404, 39.915)),
# independent of our implementation: WGS84 (116.404, 39.915) → GCJ-02 below.
WGS84_PT = (116.404, 39.915)
GCJ02_PT = (116.41024449916938, 39.91640428150164)

XSS_NAME = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'

# Opens the popup and tooltip of every feature of every map on the page, the way a click or a hover
# does (events on the feature, handled by its layer), and counts elements smuggled in by data.
OPEN_ALL_JS = """
(async () => {
  let popups = 0, tooltips = 0, smuggled = 0, texts = [];
  const look = (ov) => { const e = ov && ov.getElement(); if (e) {
      smuggled += e.querySelectorAll('script, img, iframe, svg, object').length; texts.push(e.textContent); } };
  for (const el of document.querySelectorAll('.folium-map')) {
    const m = window[el.id];
    const groups = [];
    m.eachLayer(l => { if (l.getLayers && l.feature === undefined) groups.push(l); });
    for (const g of groups) {
      if (g.getPopup && g.getPopup()) { g.getPopup().options.autoPan = false; }
      for (const sub of g.getLayers()) {
        const c = sub.getLatLng ? sub.getLatLng() : sub.getBounds().getCenter();
        if (g.getPopup && g.getPopup()) { sub.fire('click', {latlng: c}, true); popups++; look(g.getPopup()); }
        if (g.getTooltip && g.getTooltip()) { sub.fire('mouseover', {latlng: c}, true); tooltips++; look(g.getTooltip());
          sub.fire('mouseout', {latlng: c}, true); }
      }
    }
  }
  await new Promise(r => setTimeout(r, 300));
  return {popups, tooltips, smuggled, xss: window.__xss || 0, text: texts.join('\\n')};
})()
"""


# --- helpers ------------------------------------------------------------------------------------

def layer_data(html: str) -> list[dict]:
    """Every GeoJSON FeatureCollection drawn on the page, in order (parsed from ``L.geoJSON(...)``)."""
    dec = json.JSONDecoder()
    out, i = [], 0
    while True:
        i = html.find("L.geoJSON(", i)
        if i < 0:
            return out
        obj, end = dec.raw_decode(html, i + len("L.geoJSON("))
        out.append(obj)
        i = end


def heat_data(html: str) -> list:
    i = html.find("L.heatLayer(")
    assert i >= 0
    return json.JSONDecoder().raw_decode(html, i + len("L.heatLayer("))[0]


def coords_of(fc: dict) -> np.ndarray:
    pts = []

    def walk(c):
        if isinstance(c[0], (int, float)):
            pts.append(c)
        else:
            for x in c:
                walk(x)
    for f in fc["features"]:
        walk(f["geometry"]["coordinates"])
    return np.array(pts, dtype=float)


def assert_not_blank(png: bytes) -> None:
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    h, w, _ = img.shape
    assert h > 200 and w > 200
    # the background of a tile-less map is one flat colour: enough pixels must differ from it
    bg = np.array([0xF3, 0xF1, 0xEA])
    differs = np.abs(img - bg).sum(axis=2) > 30
    assert differs.mean() > 0.05, f"screenshot nearly blank ({differs.mean():.3%} drawn)"
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50


def open_in_browser(m, path, evaluate=None):
    from maps.render import open_page

    save_html(m, path)
    return open_page(path, evaluate=evaluate)


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hz(hangzhou, hangzhou_grids, hangzhou_scenario):
    """Real Hangzhou grids/communities/streets/events with synthesised people (seed 1)."""
    comms = read_layer(hangzhou / "communities.geojson", "communities", fix=True)
    streets = read_layer(hangzhou / "streets.geojson", "streets", fix=True)
    events = read_layer(hangzhou / "events.geojson", "incidents", make_ids=True)
    return {**hangzhou_scenario, "communities": comms, "streets": streets, "incidents": events}


@pytest.fixture(scope="module")
def small(hangzhou_grids, hangzhou):
    """Eight real grids of one community with synthesised people (fast enough for linkage/redraw)."""
    comms = read_layer(hangzhou / "communities.geojson", "communities", fix=True)
    grids = hangzhou_grids
    first = grids.iloc[0]
    comm = comms[comms.intersects(first.geometry.representative_point())].iloc[:1]
    sub = grids[grids.representative_point().within(comm.geometry.iloc[0])].reset_index(drop=True)
    assert 2 <= len(sub) <= 30
    sc = synth_in_grids(sub, seed=3)
    return {**sc, "communities": comm}


# --- tiles and the Amap shift -------------------------------------------------------------------

def test_check_tiles():
    assert check_tiles("OSM") == "osm" and check_tiles("高德") == "amap" and check_tiles("offline") == "none"
    with pytest.raises(MapError, match="unknown tiles"):
        check_tiles("google")


def test_tianditu_needs_key(monkeypatch):
    # the key is an argument: maps/ never reads the environment (the faces pass the setting)
    monkeypatch.setenv("GRIDMAP_TIANDITU_KEY", "from-the-environment")
    with pytest.raises(MapError, match="GRIDMAP_TIANDITU_KEY"):
        new_canvas((120.1, 30.2, 120.2, 30.3), "tianditu")
    html = page_html(new_canvas((120.1, 30.2, 120.2, 30.3), "tianditu", tianditu_key="abc123").finish())
    assert "tianditu.gov.cn/vec_w/wmts" in html and "tianditu.gov.cn/cva_w/wmts" in html and "tk=abc123" in html


def test_offline_page_loads_nothing_from_the_network():
    html = page_html(new_canvas((120.1, 30.2, 120.2, 30.3), "none").finish())
    assert "<script src=" not in html and "<link rel=\"stylesheet\" href=" not in html
    assert "cdn.jsdelivr" not in html and "tile.openstreetmap" not in html
    assert "Leaflet 1.9.4" in html and "heatLayer" in html  # both libraries inlined


def _one_point_map(tiles):
    pt = gpd.GeoDataFrame({"incident_id": ["E1"], "category": ["民政"], "reported_at": [pd.Timestamp("2024-05-01")],
                           "light": ["red"]}, geometry=gpd.points_from_xy([WGS84_PT[0]], [WGS84_PT[1]]), crs=4326)
    sq = gpd.GeoDataFrame({"grid_code": ["G1"]}, geometry=[shapely.Point(*WGS84_PT).buffer(0.002, 1)], crs=4326)
    return page_html(incident_map(pt, grids=sq, tiles=tiles))


def test_amap_shifts_everything_drawn_to_gcj02():
    html = _one_point_map("amap")
    grid_fc, inc_fc = layer_data(html)
    # the incident marker sits on the published GCJ-02 coordinates (6 decimals = 0.1 m)
    np.testing.assert_allclose(coords_of(inc_fc)[0], GCJ02_PT, atol=1.1e-6)
    # every polygon vertex is shifted by the same ~600 m offset
    verts = coords_of(grid_fc)
    ring = np.asarray(shapely.Point(*WGS84_PT).buffer(0.002, 1).exterior.coords)
    from geodata.crs import wgs84_to_gcj02
    np.testing.assert_allclose(verts, np.column_stack(wgs84_to_gcj02(ring[:, 0], ring[:, 1])), atol=1.1e-6)
    # heat points ([lat, lon, w]) too
    lat, lon, _ = heat_data(html)[0]
    np.testing.assert_allclose([lon, lat], GCJ02_PT, atol=1.1e-5)
    assert "autonavi.com" in html
    # and the map opens on the shifted bounds
    i = html.rfind(".fitBounds(")  # ours comes after the inlined libraries
    got = np.array(json.JSONDecoder().raw_decode(html, i + len(".fitBounds("))[0])
    x, y = WGS84_PT
    (x0, x1), (y0, y1) = wgs84_to_gcj02(np.array([x - 0.002, x + 0.002]), np.array([y - 0.002, y + 0.002]))
    np.testing.assert_allclose(got, [[y0, x0], [y1, x1]], atol=1e-9)


@pytest.mark.parametrize("tiles", ["osm", "none"])
def test_other_tiles_draw_wgs84_unchanged(tiles):
    html = _one_point_map(tiles)
    _, inc_fc = layer_data(html)
    np.testing.assert_allclose(coords_of(inc_fc)[0], WGS84_PT, atol=1e-9)
    assert ("tile.openstreetmap.org" in html) == (tiles == "osm")


# --- coverage -----------------------------------------------------------------------------------

def test_grid_class_from_census_and_from_grid_status(small):
    st = census.grid_counts(small["grids"], small["households"], small["members"])
    cls = grid_class(st)
    expected = {"no branch": "no branch", "no members": "no members", "over-size": "over-size",
                "under-size": "under-size", "ok": "ok"}
    assert list(cls) == [expected[s] for s in st["status"]]
    rich = coverage.grid_status(small["grids"], small["households"], small["members"])
    rich.loc[0, ["has_branch", "blank", "blank_reason"]] = [False, True, "no branch, no members"]
    cls2 = grid_class(rich)
    assert cls2[0] == "no branch, no members"
    for c, r, s in zip(cls2[1:], rich["blank_reason"].iloc[1:], rich["size_status"].iloc[1:]):
        assert c == (r if isinstance(r, str) else s)


def test_coverage_map_of_real_hangzhou_grids(hz):
    st = coverage.grid_status(hz["grids"], hz["households"], hz["members"])
    html = page_html(coverage_map(st, communities=hz["communities"], streets=hz["streets"], tiles="none"))
    fcs = layer_data(html)
    grids_fc, cov_fc, comm_fc, street_fc = fcs
    assert len(grids_fc["features"]) == len(st) == 297
    assert len(cov_fc["features"]) == 297
    assert len(comm_fc["features"]) == len(hz["communities"]) and len(street_fc["features"]) == 8
    # the legend counts add up and name the blank grids in Chinese
    cls = pd.Series(grid_class(st)).value_counts()
    for key, _, label in CLASSES:
        assert f"{label}（{int(cls.get(key, 0))}）" in html
    assert "空白网格" in html and "联户覆盖率" in html
    # each grid's popup carries its figures (one shared label list, values per grid)
    from maps.coverage import POPUP_LABELS
    row = st.iloc[5]
    vals = {v[0]: dict(zip(POPUP_LABELS, v)) for v in (f["properties"]["v"] for f in grids_fc["features"])}
    assert vals[row["grid_code"]]["户数"] == f"{row['households']:,}"
    assert vals[row["grid_code"]]["联户覆盖率"] == f"{row['link_coverage_pct']:.1f}%"


# --- escaping -----------------------------------------------------------------------------------

def test_data_text_is_escaped_in_the_page(small):
    grids = small["grids"].copy()
    grids.loc[0, "name"] = XSS_NAME
    st = census.grid_counts(grids, small["households"], small["members"])
    html = page_html(coverage_map(st, tiles="none"))
    assert "<script>window.__xss" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__xss" in html


@pytest.mark.browser
def test_a_household_named_script_does_not_run(small, tmp_path):
    hh = small["households"].copy()
    code = hh["grid_code"].iloc[0]
    in_grid = hh.index[hh["grid_code"] == code]
    hh.loc[in_grid, "name"] = XSS_NAME
    hh.loc[in_grid, "tags"] = XSS_NAME
    from gridmap.linkage import link_households

    links = link_households(hh, small["members"], grids=small["grids"]).links
    grids = small["grids"].copy()
    grids["name"] = XSS_NAME
    m = links_map(links, hh, small["members"], grid_code=code, grids=grids, tiles="none", show_names=True)
    rep = open_in_browser(m, tmp_path / "xss.html", evaluate=OPEN_ALL_JS)
    assert rep.errors == []
    res = rep.evaluated
    assert res["popups"] >= len(in_grid) and res["tooltips"] > 0
    assert res["smuggled"] == 0 and res["xss"] == 0
    assert "<script>window.__xss = 1</script>" in res["text"]  # shown as text, not run
    # the coverage map builds its popups from shared labels in the page: same guarantee
    st = census.grid_counts(grids, hh, small["members"])
    rep = open_in_browser(coverage_map(st, tiles="none"), tmp_path / "xss2.html", evaluate=OPEN_ALL_JS)
    assert rep.errors == []
    res = rep.evaluated
    assert res["popups"] >= len(grids) and res["smuggled"] == 0 and res["xss"] == 0
    assert XSS_NAME in res["text"]


# --- each map in headless Chromium (tiles none) -------------------------------------------------

@pytest.mark.browser
def test_js_error_detection_works(tmp_path):
    from maps.render import open_page

    m = new_canvas((120.1, 30.2, 120.2, 30.3), "none").finish()
    p = tmp_path / "broken.html"
    p.write_text(page_html(m).replace("</body>", "<script>notDefinedAnywhere();</script></body>"), encoding="utf-8")
    rep = open_page(p)
    assert any("notDefinedAnywhere" in e for e in rep.errors)


@pytest.mark.browser
def test_coverage_map_in_browser(hz, tmp_path):
    m = build_map("coverage", hz, MapOptions(tiles="none"))
    rep = open_in_browser(m, tmp_path / "coverage.html")
    assert rep.errors == []
    assert_not_blank(rep.png)


@pytest.mark.browser
def test_service_map_in_browser(hz, tmp_path):
    m = build_map("service", hz, MapOptions(tiles="none", sites=3))
    html = page_html(m)
    assert "建议新增站点" in html and "直线服务圈外住户" in html and "党群服务中心" in html
    rep = open_in_browser(m, tmp_path / "service.html")
    assert rep.errors == []
    assert_not_blank(rep.png)


@pytest.mark.browser
def test_incident_map_in_browser(hz, tmp_path):
    inc = hz["incidents"]
    lit = incident_lights(inc)
    assert set(lit["light"]) == {"closed"}  # every Hangzhou event is closed, close time unknown
    m = build_map("incidents", hz, MapOptions(tiles="none"))
    rep = open_in_browser(m, tmp_path / "incidents.html")
    assert rep.errors == []
    assert_not_blank(rep.png)


@pytest.mark.browser
def test_links_map_in_browser(small, tmp_path):
    code = small["households"]["grid_code"].iloc[0]
    m = build_map("links", small, MapOptions(tiles="none", grid=code))
    rep = open_in_browser(m, tmp_path / "links.html")
    assert rep.errors == []
    assert_not_blank(rep.png)


@pytest.mark.browser
def test_redraw_map_in_browser(small, tmp_path):
    m = build_map("redraw", small, MapOptions(tiles="none"))
    html = page_html(m)
    assert html.count('class="folium-map"') == 2 and "调整方案" in html
    rep = open_in_browser(m, tmp_path / "redraw.html",
                          evaluate="(() => { const [a, b] = [...document.querySelectorAll('.folium-map')].map(e => window[e.id]);"
                                   " a.setZoom(a.getZoom() + 1, {animate: false});"
                                   " return [a.getZoom(), b.getZoom()]; })()")
    assert rep.errors == []
    assert rep.evaluated[0] == rep.evaluated[1]  # the two maps move together
    assert_not_blank(rep.png)


# --- incidents: lights and the marker cap -------------------------------------------------------

def _incidents(n_each=2):
    at = datetime(2024, 5, 10, 12, 0)
    # ordinary incidents: 24 h window, yellow in the last 20 % (4.8 h)
    ages = {"red": timedelta(hours=30), "yellow": timedelta(hours=22), "green": timedelta(hours=2)}
    rows = []
    for light, age in ages.items():
        for i in range(n_each):
            rows.append({"incident_id": f"{light}-{i}", "category": "市容环境", "level": 1, "status": "上报",
                         "reported_at": at - age - timedelta(minutes=i), "expect": light})
    rows.append({"incident_id": "done", "category": "市容环境", "level": 1, "status": "网格员关闭",
                 "reported_at": at - timedelta(hours=40), "expect": "closed"})
    df = pd.DataFrame(rows)
    xy = np.column_stack([120.16 + 0.001 * np.arange(len(df)), np.full(len(df), 30.27)])
    return gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=4326), at


def test_incident_lights_follow_the_dispatch_rules():
    inc, at = _incidents()
    lit = incident_lights(inc, at)
    assert list(lit["light"]) == list(inc["expect"])
    assert (pd.to_datetime(lit["deadline_at"].iloc[0]) - pd.Timestamp(inc["reported_at"].iloc[0]).tz_localize(
        "Asia/Shanghai")) == pd.Timedelta(hours=24)


def test_incident_markers_capped_most_urgent_first():
    inc, at = _incidents(n_each=3)
    html = page_html(incident_map(incident_lights(inc, at), tiles="none", max_markers=4))
    markers = layer_data(html)[-1]["features"]
    assert len(markers) == 4
    assert sorted(f["properties"]["s"] for f in markers) == ["red", "red", "red", "yellow"]
    assert markers[-1]["properties"]["s"] == "red"  # red drawn last, on top
    assert len(heat_data(html)) == len(inc)  # the heat layer keeps every incident
    assert "其余见热力图" in html


def test_incident_heat_aggregates_to_h3_at_scale():
    rng = np.random.default_rng(0)
    n = 500
    pts = gpd.GeoDataFrame({"incident_id": [f"E{i}" for i in range(n)], "category": "民政",
                            "reported_at": pd.Timestamp("2024-01-01")},
                           geometry=gpd.points_from_xy(120.15 + rng.random(n) * 0.01, 30.26 + rng.random(n) * 0.01),
                           crs=4326)
    html = page_html(incident_map(pts, tiles="none", heat_points=100, max_markers=50))
    heat = heat_data(html)
    assert 10 < len(heat) < n
    assert len(layer_data(html)[-1]["features"]) == 50


# --- service ------------------------------------------------------------------------------------

def test_coarsen_cells_keeps_households(hz):
    cov = coverage.straight_line_coverage(hz["households"], hz["service_centres"].iloc[:5])
    cells = coverage.gap_cells(hz["households"], ~cov["covered"].to_numpy(), res=10)
    assert len(cells) > 50
    small = coarsen_cells(cells, max_cells=50)
    assert len(small) <= 50 and small["res"].iloc[0] < 10
    assert small["households"].sum() == cells["households"].sum()


def test_service_map_draws_true_size_circles_and_walking_areas(small):
    centres = small["service_centres"].iloc[:1].copy()
    centres["radius_m"] = 750.0
    walk = gpd.GeoDataFrame({"centre_id": centres["centre_id"], "basis": "walking"},
                            geometry=[centres.geometry.iloc[0].buffer(0.004)], crs=4326)
    html = page_html(service_map(centres, walking_areas=walk, tiles="none"))
    fcs = layer_data(html)
    circles = [f for fc in fcs for f in fc["features"] if "r" in f["properties"]]
    assert [f["properties"]["r"] for f in circles] == [750.0]
    assert any(f["geometry"]["type"] == "Polygon" for fc in fcs for f in fc["features"])
    assert "步行15分钟可达范围" in html


def test_service_map_with_walking_areas_on_the_bund_sample():
    from conftest import SAMPLE
    from geodata.scenario import load_scenario

    layers = load_scenario(SAMPLE)
    html = page_html(build_map("service", layers, MapOptions(tiles="none", walk=True)))
    assert "步行15分钟可达范围" in html and "步行15分钟覆盖" in html
    walk_fc = [fc for fc in layer_data(html) if fc["features"] and "步行可达范围" in fc["features"][0]["properties"]["t"]]
    assert len(walk_fc) == 1 and len(walk_fc[0]["features"]) == len(layers["service_centres"])


# --- links --------------------------------------------------------------------------------------

def test_responders_map_holds_only_their_households(small):
    from gridmap.linkage import link_households

    hh = small["households"]
    links = link_households(hh, small["members"], grids=small["grids"]).links
    member = links["member_id"].value_counts().index[0]
    own = set(links.loc[links["member_id"] == member, "household_id"])
    others = set(hh["household_id"]) - own
    html = page_html(links_map(links, hh, small["members"], member_id=member, tiles="none"))
    assert all(h in html for h in own)
    assert not any(h in html for h in others)
    other_members = set(small["members"]["member_id"]) - {member}
    assert not any(f"党员 {m}" in html for m in other_members)
    # names are masked unless asked for
    name = hh.loc[hh["household_id"] == sorted(own)[0], "name"].iloc[0]
    assert name not in html and (name[0] + "*" * (len(name) - 1)) in html
    shown = page_html(links_map(links, hh, small["members"], member_id=member, tiles="none", show_names=True))
    assert name in shown


def test_links_map_orders_visits(small):
    from gridmap.linkage import link_households

    links = link_households(small["households"], small["members"], grids=small["grids"]).links
    code = small["households"]["grid_code"].iloc[0]
    html = page_html(links_map(links, small["households"], small["members"], grid_code=code, tiles="none"))
    numbered = [f for fc in layer_data(html) for f in fc["features"] if "n" in f["properties"]]
    lk = links[links["grid_code"] == code]
    assert sorted(f["properties"]["n"] for f in numbered) == sorted(lk["visit_order"].astype(int))
    with pytest.raises(MapError, match="no member"):
        links_map(links, small["households"], small["members"], member_id="nobody")


# --- redraw -------------------------------------------------------------------------------------

def test_redraw_map_highlights_moved_households(small):
    cur = census.grid_counts(small["grids"], small["households"])
    prop = small["grids"][["grid_code", "geometry"]].copy()
    prop["households"] = 400
    prop["status"] = ["kept"] * (len(prop) - 1) + ["new"]
    moved = small["households"].iloc[:7].assign(from_grid="A", to_grid="B")
    html = page_html(redraw_map(cur, prop, moved=moved, tiles="none"))
    moved_fc = layer_data(html)[2]
    assert len(moved_fc["features"]) == 7 and "调整归属的住户（7 户）" in html
    agg = page_html(redraw_map(cur, prop, moved=small["households"], tiles="none", moved_points=100))
    cells = layer_data(agg)[2]["features"]
    assert len(cells) < len(small["households"]) and all("r" in f["properties"] for f in cells)


def test_redraw_map_from_plan_layers(small):
    hh = small["households"].copy()
    hh["previous_grid_code"] = hh["grid_code"]
    hh.loc[hh.index[:5], "grid_code"] = "NEW-1"
    proposed = small["grids"][["grid_code", "geometry"]].assign(households=400, status="kept")
    layers = {"grids_before_redraw": small["grids"], "grids": proposed, "redraw_grids": proposed, "households": hh}
    html = page_html(build_map("redraw", layers, MapOptions(tiles="none")))
    assert "调整归属的住户（5 户）" in html
    tips = [f["properties"]["t"] for f in layer_data(html)[2]["features"]]
    assert all("→ NEW-1" in t for t in tips)


# --- CLI and plan -------------------------------------------------------------------------------

def _scenario_dir(tmp_path, small):
    d = tmp_path / "scen"
    d.mkdir()
    for k in ("grids", "households", "members", "service_centres", "communities"):
        write_layer(small[k], d / f"{k}.gpkg")
    return d


def test_cli_map_commands(tmp_path, small):
    from api.cli import app

    d = _scenario_dir(tmp_path, small)
    r = CliRunner().invoke(app, ["map", "coverage", str(d), "--tiles", "none", "--out", str(tmp_path / "c.html")])
    assert r.exit_code == 0, r.output
    assert len(layer_data((tmp_path / "c.html").read_text(encoding="utf-8"))[0]["features"]) == len(small["grids"])
    r = CliRunner().invoke(app, ["map", "service", str(d), "--tiles", "amap", "--out", str(tmp_path / "s.html")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["map", "nonsense", str(d), "--out", str(tmp_path / "x.html")])
    assert r.exit_code == 2 and "unknown map" in r.output
    r = CliRunner().invoke(app, ["map", "incidents", str(d), "--out", str(tmp_path / "x.html")])
    assert r.exit_code == 2 and "incidents layer" in r.output


@pytest.mark.browser
def test_cli_png(tmp_path, small):
    from api.cli import app

    d = _scenario_dir(tmp_path, small)
    png = tmp_path / "c.png"
    r = CliRunner().invoke(app, ["map", "coverage", str(d), "--tiles", "none", "--out", str(tmp_path / "c.html"),
                                 "--png", str(png)])
    assert r.exit_code == 0, r.output
    assert_not_blank(png.read_bytes())


def test_plan_writes_maps_last(tmp_path, small):
    from api.usecases.maps import step_maps
    from api.usecases.plan import PLAN_STEPS, PlanOptions, run_plan

    assert PLAN_STEPS[-1] is step_maps
    d = _scenario_dir(tmp_path, small)
    ctx = run_plan(PlanOptions(scenario=d, outdir=tmp_path / "out", extra={"map_tiles": "none"}))
    written = ctx.summary["maps"]["written"]
    assert {"coverage", "service"} <= set(written)
    for k in written:
        assert (tmp_path / "out" / "maps" / f"{k}.html").exists()
    html = (tmp_path / "out" / "maps" / "coverage.html").read_text(encoding="utf-8")
    assert "联户覆盖率" in html  # the links step's output reached the coverage map
    for name in small["households"]["name"].iloc[:50]:
        assert name not in (tmp_path / "out" / "maps" / "links.html").read_text(encoding="utf-8") \
            if "links" in written else True
    ctx = run_plan(PlanOptions(scenario=d, outdir=tmp_path / "out2", maps=False))
    assert not (tmp_path / "out2" / "maps").exists()


# --- HTTP ---------------------------------------------------------------------------------------

@pytest.fixture()
def stored(engine, small):
    """The small scenario in PostGIS, with one current link run; region = its community."""
    from geodata.store.importer import import_layer
    from gridmap.linkage import link_households

    comm = small["communities"].copy()
    comm["street_code"] = "S-TEST"
    grids = small["grids"].copy()
    grids["community_code"] = comm["code"].iloc[0]
    streets = gpd.GeoDataFrame({"code": ["S-TEST"], "name": ["测试街道"]}, geometry=[comm.union_all()], crs=4326)
    from geodata.io import normalise
    for layer, gdf in (("streets", streets), ("communities", comm), ("grids", grids),
                       ("households", small["households"]), ("members", small["members"]),
                       ("service_centres", small["service_centres"])):
        import_layer(engine, layer, normalise(gdf, layer) if layer in ("streets", "communities") else gdf)
    links = link_households(small["households"], small["members"], grids=small["grids"]).links
    with engine.begin() as c:
        run = c.execute(sa.text("INSERT INTO link_runs (region, is_current) VALUES (:r, true) RETURNING run_id"),
                        {"r": comm["code"].iloc[0]}).scalar()
        c.execute(sa.text("INSERT INTO links (run_id, household_id, member_id, distance_m, visit_order) "
                          "VALUES (:run, :h, :m, :d, :o)"),
                  [{"run": run, "h": h, "m": m, "d": float(d), "o": int(o)} for h, m, d, o in
                   links[["household_id", "member_id", "distance_m", "visit_order"]].itertuples(index=False)])
    return {"engine": engine, "community": comm["code"].iloc[0], "links": links}


@pytest.fixture()
def client(db_url, engine):
    from fastapi.testclient import TestClient

    from api.app import create_app

    return TestClient(create_app(db_url))


def _token(engine, role, regions, member=None):
    from geodata.store import auth as store

    _, tok = store.create_token(engine, role, list(regions), member_id=member)
    return {"Authorization": f"Bearer {tok}"}


@pytest.mark.db
def test_http_coverage_and_service_maps(client, stored, small):
    h = _token(stored["engine"], "leader", [stored["community"]])
    r = client.get("/maps/coverage", params={"region": stored["community"], "tiles": "none"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    fcs = layer_data(r.text)
    assert len(fcs[0]["features"]) == len(small["grids"])
    assert "联户覆盖率" in r.text
    r = client.get("/maps/service", params={"region": "S-TEST", "tiles": "amap"}, headers=h)
    assert r.status_code == 404  # the street is above the token's community: the same 404 as a missing one
    r = client.get("/maps/service", params={"region": stored["community"], "tiles": "amap"}, headers=h)
    assert r.status_code == 200 and "autonavi" in r.text
    r = client.get("/maps/coverage", params={"region": stored["community"]})
    assert r.status_code == 401


@pytest.mark.db
def test_http_roles_and_the_responders_own_map(client, stored, small):
    eng, comm, links = stored["engine"], stored["community"], stored["links"]
    viewer = _token(eng, "viewer", [comm])
    assert client.get("/maps/coverage", params={"region": comm}, headers=viewer).status_code == 200
    assert client.get("/maps/links", params={"region": comm, "grid": links["grid_code"].iloc[0]},
                      headers=viewer).status_code == 403
    member = links["member_id"].value_counts().index[0]
    own = set(links.loc[links["member_id"] == member, "household_id"])
    resp = _token(eng, "responder", [comm], member=member)
    r = client.get("/maps/links", params={"region": comm, "tiles": "none"}, headers=resp)
    assert r.status_code == 200, r.text
    assert all(hid in r.text for hid in own)
    assert not any(hid in r.text for hid in set(small["households"]["household_id"]) - own)
    name = small["households"].set_index("household_id").loc[sorted(own)[0], "name"]
    assert name in r.text  # their own households, names shown …
    with eng.connect() as c:  # … and the read audited (ids only)
        ids = c.execute(sa.text("SELECT ids FROM audit_log WHERE action = 'pii_read' ORDER BY audit_id DESC LIMIT 1"))\
            .scalar()
    assert set(ids) == own
    other = next(m for m in links["member_id"].unique() if m != member)
    assert client.get("/maps/links", params={"region": comm, "member": other}, headers=resp).status_code == 403
    leader = _token(eng, "leader", [comm])
    r = client.get("/maps/links", params={"region": comm, "grid": links["grid_code"].iloc[0], "tiles": "none"},
                   headers=leader)
    assert r.status_code == 200 and name not in r.text  # others see names masked
    assert client.get("/maps/redraw", params={"region": comm}, headers=resp).status_code == 403
    assert client.get("/maps/coverage", params={"region": "NOWHERE"},
                      headers=_token(eng, "admin", ["*"])).status_code == 404


@pytest.mark.db
def test_http_links_map_draws_only_saved_links(client, engine, small):
    # a region with households and members but no saved 包片联户 run: no engine may run inside the GET
    from geodata.store.importer import import_layer

    comm = small["communities"]["code"].iloc[0]
    grids = small["grids"].copy()
    grids["community_code"] = comm
    for layer, gdf in (("grids", grids), ("households", small["households"]), ("members", small["members"])):
        import_layer(engine, layer, gdf)

    def counts():
        with engine.connect() as c:
            return [c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in ("link_runs", "links")]

    before = counts()
    h = _token(engine, "leader", [grids["grid_code"].iloc[0]])
    r = client.get("/maps/links", params={"region": grids["grid_code"].iloc[0], "grid": grids["grid_code"].iloc[0],
                                          "tiles": "none"}, headers=h)
    assert r.status_code == 409, r.text
    assert "recompute links first" in r.json()["detail"] and "包片联户" in r.json()["detail"]
    assert counts() == before == [0, 0]


def test_the_plan_is_one_explicit_ordered_list():
    from api.usecases import gaps, links, maps, plan, redraw

    assert plan.PLAN_STEPS == (redraw.step_redraw, plan.step_census, links.step_links, gaps.step_gaps,
                               maps.step_maps)
    assert isinstance(plan.PLAN_STEPS, tuple)  # nothing can register itself into it


def test_routes_and_use_cases_import_no_command_module():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "api"
    for folder in ("routes", "usecases"):
        for path in (root / folder).glob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
            names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
            bad = [m for m in names if m.startswith(("api.commands", "api.cli", "typer", "rich"))
                   or (folder == "usecases" and m.startswith(("fastapi", "api.routes")))]
            assert not bad, f"{path.name} imports {bad}"
