"""Folium maps: tiles and the Amap shift, coverage, service, incident, links and redraw maps, escaping."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from api.usecases.maps import MapOptions, build_map, incident_lights
from gridmap import census, coverage
from maps.base import MapError, check_tiles, new_canvas, page_html
from maps.coverage import CLASSES, coverage_map, grid_class
from maps.incidents import incident_map
from maps.links import links_map
from maps.redraw import redraw_map
from maps.service import coarsen_cells, service_map

from maps_cases import _incidents, coords_of, heat_data, layer_data


# Reference pair of the widely used coordtransform library (wgs84togcj02(116.404, 39.915)),
# independent of our implementation: WGS84 (116.404, 39.915) → GCJ-02 below.
WGS84_PT = (116.404, 39.915)
GCJ02_PT = (116.41024449916938, 39.91640428150164)

XSS_NAME = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


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
