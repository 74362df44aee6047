"""Redraw map (网格调整对比图): today's grids beside the proposed ones, moved households highlighted.

Two synchronised maps on one page: on the left today's grids coloured by size against the band
(urban 300–500, rural 100–200 households), on the right the grids of
:func:`gridmap.districting.redraw` (``grid_code``, ``households``, ``band_min``, ``band_max``,
``in_band``, ``moved``, ``status`` kept/redrawn/new) with the households that change grid. Many
moved households are aggregated into H3 cells (resolution 10, edge ~66 m) so a city stays light.
All inputs WGS84.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
from branca.element import Figure, MacroElement

from folium.template import Template
from gridmap.contract import grid_band
from maps.base import (H3_EDGE_M, Style, add_outlines, bounds_of, count_cells, esc, fmt_int, new_canvas, records,
                       simplify_m)

SIZE_CLASSES = (("over", "#8856a7", "超出规模"), ("under", "#74a9cf", "低于规模"), ("ok", "#41ab5d", "规模达标"),
                ("empty", "#d9d9d9", "无住户"))
STATUS_CLASSES = (("kept", "#41ab5d", "保留（未调整）"), ("redrawn", "#fd8d3c", "重新划分"), ("new", "#6baed6", "新增网格"))
MOVED_COLOUR = "#e7298a"
#: Above this many moved households they are drawn as H3 cells with counts: resolution 10 (edge
#: ~66 m), coarser (9, 8 …) while more than ``MOVED_CELLS`` cells would be drawn.
MOVED_POINTS = 3_000
MOVED_RES = 10
MOVED_CELLS = 2_000
#: Row labels of a grid's popup.
POPUP_LABELS = ["网格编码", "所属社区", "户数", "规模标准", "状态", "迁入住户", "紧凑度 (Polsby–Popper)"]


class _SyncMaps(MacroElement):
    """Keep two Leaflet maps on the same view (pan/zoom one, the other follows)."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function (a, b) {
            var busy = false;
            function follow(src, dst) {
                src.on("move", function () {
                    if (busy) { return; }
                    busy = true;
                    dst.setView(src.getCenter(), src.getZoom(), {animate: false});
                    busy = false;
                });
            }
            follow(a, b); follow(b, a);
        })({{ this.left }}, {{ this.right }});
        {% endmacro %}
    """)

    def __init__(self, left: str, right: str):
        super().__init__()
        self._name = "SyncMaps"
        self.left = left
        self.right = right


def size_class(grids: pd.DataFrame) -> np.ndarray:
    """``over|under|ok|empty`` per grid from ``households`` and the band (``band_min``/``band_max`` or ``kind``)."""
    hh = pd.to_numeric(grids["households"], errors="coerce").fillna(0).to_numpy()
    if "band_min" in grids.columns and "band_max" in grids.columns:
        lo = pd.to_numeric(grids["band_min"]).to_numpy()
        hi = pd.to_numeric(grids["band_max"]).to_numpy()
    else:
        kinds = grids["kind"] if "kind" in grids.columns else [None] * len(grids)
        bands = np.array([grid_band(k if isinstance(k, str) else None) for k in kinds]).reshape(-1, 2)
        lo, hi = bands[:, 0], bands[:, 1]
    return np.where(hh == 0, "empty", np.where(hh > hi, "over", np.where(hh < lo, "under", "ok"))).astype(object)


def _grid_values(row: dict, cls_label: str) -> list:
    """Popup values of one grid, one per ``POPUP_LABELS`` (None = row left out)."""
    def g(c):
        v = row.get(c)
        return None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v
    band = f"{int(g('band_min'))}–{int(g('band_max'))} 户" if g("band_min") is not None and g("band_max") is not None \
        else None
    pp = g("polsby_popper")
    return [g("grid_code"), g("community_code"), fmt_int(g("households")), band, cls_label, fmt_int(g("moved")),
            None if pp is None else f"{float(pp):.2f}"]


def redraw_map(current: gpd.GeoDataFrame, proposed: gpd.GeoDataFrame, *, moved: gpd.GeoDataFrame | None = None,
               communities: gpd.GeoDataFrame | None = None, streets: gpd.GeoDataFrame | None = None,
               tiles: str = "osm", tianditu_key: str = "", title: str | None = None, moved_points: int = MOVED_POINTS) -> Figure:
    """Today's grids (left) beside the proposed grids (right), views kept in step.

    Parameters
    ----------
    current : today's grids, WGS84, with ``grid_code`` and ``households`` (and ``band_min``/``band_max``
        or ``kind``), e.g. :func:`gridmap.census.grid_counts`.
    proposed : proposed grids, WGS84 — ``RedrawResult.grids``.
    moved : households that change grid, WGS84 points (optional ``household_id``, ``from_grid``,
        ``to_grid``).
    communities, streets : outlines on both maps.
    tianditu_key : Tianditu browser key (needed for ``tianditu`` tiles).
    moved_points : above this many moved households they are drawn as H3 cells with counts.

    Returns
    -------
    branca Figure with the two maps (save with :func:`maps.base.save_html`).
    """
    fig = Figure()
    bounds = bounds_of(current, proposed, moved)
    left = new_canvas(bounds, tiles, tianditu_key=tianditu_key, figure=fig, width="50%", left="0%")
    right = new_canvas(bounds, tiles, tianditu_key=tianditu_key, figure=fig, width="50%", left="50%")
    left.add_title(title or "现有网格", css="")
    right.add_title("调整方案", css="left: calc(50% + 54px);")
    cur = current.reset_index(drop=True)
    cls = size_class(cur)
    label = {k: lab for k, _, lab in SIZE_CLASSES}
    dec = 5 if len(cur) > 3000 else 6
    shown = simplify_m(cur, 2.0)
    names = cur["name"] if "name" in cur.columns else cur["grid_code"]
    left.add_features(shown, name="现有网格", style_keys=cls,
                      styles={k: Style(color="#555555", fill_color=c, weight=0.8, fill_opacity=0.6) for k, c, _ in SIZE_CLASSES},
                      tooltips=[f"{esc(n)}｜{fmt_int(h) or 0} 户｜{label[c]}" for n, h, c in zip(names, cur["households"], cls)],
                      popups=[(n, _grid_values(r, label[c])) for n, r, c in zip(names, records(cur), cls)],
                      popup_labels=POPUP_LABELS, decimals=dec)
    counts = pd.Series(cls).value_counts()
    left.add_legend("现有网格规模", [(c, f"{lab}（{int(counts.get(k, 0))}）") for k, c, lab in SIZE_CLASSES],
                    note=f"共 {len(cur):,} 个网格", css="right: calc(50% + 10px);")
    prop = proposed.reset_index(drop=True)
    st = prop["status"].astype(str).to_numpy() if "status" in prop.columns else np.full(len(prop), "redrawn", object)
    st = np.array([s if s in ("kept", "redrawn", "new") else "redrawn" for s in st], dtype=object)
    slabel = {k: lab for k, _, lab in STATUS_CLASSES}
    pcls = size_class(prop) if "households" in prop.columns else np.full(len(prop), "ok", object)
    styles = {k: Style(color="#555555", fill_color=c, weight=0.8, fill_opacity=0.55) for k, c, _ in STATUS_CLASSES}
    pshown = simplify_m(prop, 2.0)
    pnames = prop["grid_code"]
    right.add_features(pshown, name="调整后网格", style_keys=st, styles=styles,
                       tooltips=[f"{esc(n)}｜{fmt_int(h) or 0} 户｜{slabel[s]}"
                                 for n, h, s in zip(pnames, prop.get("households", pd.Series(0, index=prop.index)), st)],
                       popups=[(n, _grid_values(r, f"{slabel[s]}，{label[c]}"))
                               for n, r, s, c in zip(pnames, records(prop), st, pcls)],
                       popup_labels=POPUP_LABELS, decimals=dec)
    pcounts = pd.Series(st).value_counts()
    items = [(c, f"{lab}（{int(pcounts.get(k, 0))}）") for k, c, lab in STATUS_CLASSES]
    n_moved = 0
    if moved is not None and len(moved):
        n_moved = len(moved)
        if n_moved > moved_points:
            mg = count_cells(moved, MOVED_RES, MOVED_CELLS)
            cnt = mg["count"].to_numpy()
            edge = H3_EDGE_M.get(int(mg["res"].iloc[0]), 1000.0)
            right.add_features(mg, name="调整归属的住户", style_keys=["m"] * len(mg),
                               styles={"m": Style(color=MOVED_COLOUR, fill_color=MOVED_COLOUR, weight=0.5,
                                                  fill_opacity=0.8, radius=4)},
                               radii_m=np.clip(edge * 0.2 * np.sqrt(cnt), edge * 0.15, edge * 0.9),
                               tooltips=[f"调整归属 {int(c)} 户" for c in cnt], pane="gm-moved", pane_z=460)
        else:
            tips = [f"住户 {esc(r.get('household_id'))}：{esc(r.get('from_grid'))} → {esc(r.get('to_grid'))}"
                    for r in records(moved)]
            right.add_features(moved, name="调整归属的住户", style_keys=["m"] * len(moved),
                               styles={"m": Style(color="#ffffff", fill_color=MOVED_COLOUR, weight=1.0,
                                                  fill_opacity=1.0, radius=4)},
                               tooltips=tips, pane="gm-moved", pane_z=460)
        items.append((MOVED_COLOUR, f"调整归属的住户（{n_moved:,} 户）"))
    in_band = int((pcls == "ok").sum())
    right.add_legend("调整方案", items, note=f"共 {len(prop):,} 个网格，规模达标 {in_band:,} 个")
    for c in (left, right):
        add_outlines(c, communities, streets)
    left.finish(layer_control=True)
    right.finish(layer_control=True)
    right.map.add_child(_SyncMaps(left.map.get_name(), right.map.get_name()))
    return fig
