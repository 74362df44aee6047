"""Folium maps opened in headless Chromium: no script errors, data never runs as script."""

from __future__ import annotations

import pytest

from api.usecases.maps import MapOptions, build_map, incident_lights
from gridmap import census
from maps.base import new_canvas, page_html
from maps.coverage import coverage_map
from maps.links import links_map

from maps_cases import assert_not_blank, open_in_browser


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
