"""Incident map (网格事件热力图): a heat map of incidents and markers coloured by 红黄绿灯.

Incidents follow the data contract (``incident_id``, ``category``, ``reported_at``, point; optional
``level``, ``status``, ``grid_code``, ``source``) plus what the dispatch engine adds: ``light`` —
``red`` (overdue, 红灯), ``yellow`` (close to the deadline, 黄灯), ``green`` (on time, 绿灯),
``closed`` (closed at an unknown time, 已办结) — and, where known, ``deadline_at`` and
``assigned_member_id``. Incidents without a light are drawn grey (未评定). Chinese values
(``红``/``红灯`` …) are accepted too.

City scale: the heat layer is fed H3 cell centres weighted by their incident count once there are
more than ``heat_points`` incidents, and at most ``max_markers`` markers are drawn — red first,
then yellow, green, closed and unrated, newest first inside each; the legend says how many were
left to the heat layer only.
"""

from __future__ import annotations

import folium
import geopandas as gpd
import h3
import numpy as np
import pandas as pd

from gridmap.cells import points_to_cells
from maps.base import Style, add_outlines, bounds_of, esc, new_canvas, records, simplify_m

#: Light classes, in drawing priority: (key, colour, Chinese label).
LIGHTS = (("red", "#d7191c", "红灯（已超时）"), ("yellow", "#f5b800", "黄灯（临近时限）"),
          ("green", "#1a9641", "绿灯（按时）"), ("closed", "#4a6fa5", "已办结（办结时间未知）"),
          ("none", "#8c8c8c", "未评定"))
LIGHT_LABEL = {k: label for k, _, label in LIGHTS}
_LIGHT_ALIASES = {"red": "red", "红": "red", "红灯": "red", "r": "red",
                  "yellow": "yellow", "黄": "yellow", "黄灯": "yellow", "amber": "yellow", "y": "yellow",
                  "green": "green", "绿": "green", "绿灯": "green", "g": "green", "closed": "closed",
                  "已办结": "closed"}
_LIGHT_COLUMNS = ("light", "traffic_light", "lamp")

#: Above this many incidents the heat layer is built from H3 cells (resolution ``HEAT_RES``).
HEAT_POINTS = 20_000
HEAT_RES = 10
MAX_MARKERS = 3_000


def incident_lights(incidents: pd.DataFrame) -> np.ndarray:
    """Normalised light (``red|yellow|green|none``) of every incident from its ``light`` column."""
    col = next((c for c in _LIGHT_COLUMNS if c in incidents.columns), None)
    if col is None:
        return np.full(len(incidents), "none", dtype=object)
    return np.array([_LIGHT_ALIASES.get(str(v).strip().lower(), "none") if isinstance(v, str) else "none"
                     for v in incidents[col]], dtype=object)


def _time(v) -> str | None:
    if v is None or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
        return None
    try:
        return pd.Timestamp(v).strftime("%Y-%m-%d %H:%M")
    except (ValueError, TypeError):
        return str(v)


#: Row labels of an incident's popup (values from :func:`incident_popup_values`).
POPUP_LABELS = ["事件编号", "类别", "等级", "状态", "上报时间", "办理时限", "所在网格", "来源", "处置人", "红黄绿灯"]


def incident_popup_values(row: dict, light: str) -> tuple[str, list]:
    """``(title, values)`` of one incident's popup, one value per ``POPUP_LABELS`` (None = left out)."""
    def g(c):
        v = row.get(c)
        return None if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and np.isnan(v)) else v
    grid = g("grid_code") if isinstance(g("grid_code"), str) else g("reported_by_grid")
    values = [g("incident_id"), g("category"), g("level"), g("status"), _time(g("reported_at")),
              _time(g("deadline_at")), grid, g("source"), g("assigned_member_id"), LIGHT_LABEL[light]]
    return g("category") or "事件", values


def _heat_input(lonlat: np.ndarray, heat_points: int, res: int):
    """Points for the heat layer: the incidents themselves, or H3 cell centres weighted by counts."""
    if len(lonlat) <= heat_points:
        return lonlat[:, 0], lonlat[:, 1], None
    cells = points_to_cells(lonlat[:, 0], lonlat[:, 1], res)
    uniq, counts = np.unique(cells, return_counts=True)
    centres = np.array([h3.cell_to_latlng(h3.int_to_str(int(c))) for c in uniq])
    return centres[:, 1], centres[:, 0], counts.astype(float)


def incident_map(incidents: gpd.GeoDataFrame, *, grids: gpd.GeoDataFrame | None = None,
                 communities: gpd.GeoDataFrame | None = None, streets: gpd.GeoDataFrame | None = None,
                 tiles: str = "osm", tianditu_key: str = "", title: str | None = None, max_markers: int = MAX_MARKERS,
                 heat_points: int = HEAT_POINTS, heat_res: int = HEAT_RES) -> folium.Map:
    """Incident heat map with 红黄绿灯 markers (WGS84 points; shifted for Amap tiles).

    Parameters
    ----------
    incidents : WGS84 points with contract columns and optionally ``light``, ``deadline_at``,
        ``assigned_member_id``.
    grids, communities, streets : optional WGS84 polygons drawn as faint outlines.
    tiles : ``osm|amap|tianditu|none``.
    tianditu_key : Tianditu browser key (needed for ``tianditu`` tiles).
    max_markers : most markers drawn (the heat layer always holds every incident).
    heat_points, heat_res : above ``heat_points`` incidents the heat layer uses H3 cells of
        resolution ``heat_res`` (10: edge ~66 m) weighted by counts.
    """
    incidents = incidents[~incidents.geometry.isna() & ~incidents.geometry.is_empty].reset_index(drop=True)
    canvas = new_canvas(bounds_of(incidents, grids, communities, streets), tiles, tianditu_key=tianditu_key)
    canvas.add_title(title or "网格事件热力图")
    if grids is not None and len(grids):
        g = simplify_m(grids, 2.0)
        canvas.add_features(g, name="网格", style_keys=["g"] * len(g),
                            styles={"g": Style(color="#6b6b6b", weight=0.7, fill=False, fill_opacity=0)},
                            tooltips=[f"网格：{esc(n)}" for n in (g["name"] if "name" in g.columns else g["grid_code"])])
    add_outlines(canvas, communities, streets)
    lights = incident_lights(incidents)
    if len(incidents):
        ll = np.column_stack([incidents.geometry.x.to_numpy(), incidents.geometry.y.to_numpy()])
        hx, hy, hw = _heat_input(ll, heat_points, heat_res)
        canvas.add_heat(hx, hy, hw, name="事件热力")
    # markers: most urgent first, newest first within a light
    prio = {k: i for i, (k, _, _) in enumerate(LIGHTS)}
    order_key = np.array([prio[x] for x in lights])
    reported = (pd.to_datetime(incidents["reported_at"], errors="coerce") if "reported_at" in incidents.columns
                else pd.Series(pd.NaT, index=incidents.index))
    t = reported.astype("int64").to_numpy() if len(incidents) else np.zeros(0)
    order = np.lexsort((-t, order_key))
    # drawn in reverse priority so red markers end up on top of green ones
    pick = order[:max_markers][::-1]
    shown = incidents.iloc[pick]
    rows = records(shown)
    styles = {k: Style(color="#ffffff", fill_color=c, weight=1.2, fill_opacity=0.95, radius=6) for k, c, _ in LIGHTS}
    canvas.add_features(shown, name="事件（红黄绿灯）", style_keys=lights[pick],
                        tooltips=[f"{esc(r.get('category'))}｜{esc(LIGHT_LABEL[x])}" for r, x in zip(rows, lights[pick])],
                        popups=[incident_popup_values(r, x) for r, x in zip(rows, lights[pick])],
                        popup_labels=POPUP_LABELS,
                        styles=styles, pane="gm-incidents", pane_z=460)
    counts = pd.Series(lights).value_counts()
    note = f"共 {len(incidents):,} 件事件"
    if len(incidents) > len(pick):
        note += f"；标注其中最紧急的 {len(pick):,} 件，其余见热力图"
    canvas.add_legend("事件红黄绿灯", [(c, f"{label}（{int(counts.get(k, 0))}）") for k, c, label in LIGHTS], note=note)
    return canvas.finish()
