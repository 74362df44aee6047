"""Map cases shared by the maps and API tiers: readers of a saved page's layers, a blank-image check,
incidents, and the Hangzhou scenarios (../shared) the maps are drawn from.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from geodata.io import read_layer
from geodata.synth import synth_in_grids
from maps.base import save_html


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
