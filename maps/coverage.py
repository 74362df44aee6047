"""Coverage map for leaders (网格覆盖图): grids by status, blank grids with their reason, link coverage.

Reads the per-grid table of :func:`gridmap.census.grid_counts` (``households``, ``members``,
``band_min``, ``band_max``, ``status``) or, richer, of :func:`gridmap.coverage.grid_status` (adds
``blank``, ``blank_reason``, ``size_status``, ``linked_households``, ``unlinked_households``,
``link_coverage_pct``, ``members_needed``). Community and street outlines go on top; the legend
is in Chinese; each grid's popup lists its figures. Geometry is WGS84 (shifted for Amap tiles by
:class:`maps.base.MapCanvas`).
"""

from __future__ import annotations

import folium
import geopandas as gpd
import numpy as np
import pandas as pd

from gridmap.census import STATUS_NO_BRANCH, STATUS_NO_MEMBERS, STATUS_OK, STATUS_OVER, STATUS_UNDER
from maps.base import (H3_EDGE_M, Style, add_outlines, bounds_of, count_cells, esc, fmt_int, fmt_pct, new_canvas,
                       records, simplify_m)

BLANK_BOTH = "no branch, no members"

#: Grid classes, most urgent first: (key, fill colour, Chinese legend label).
CLASSES = (
    (BLANK_BOTH, "#7f0000", "空白网格：无党支部、无党员"),
    (STATUS_NO_BRANCH, "#d7301f", "空白网格：无党支部"),
    (STATUS_NO_MEMBERS, "#fc8d59", "空白网格：有住户无党员"),
    (STATUS_OVER, "#8856a7", "超出规模（户数多于上限）"),
    (STATUS_UNDER, "#74a9cf", "低于规模（户数少于下限）"),
    (STATUS_OK, "#41ab5d", "规模达标"),
)
CLASS_LABEL = {k: label for k, _, label in CLASSES}

#: Link coverage bins (包片联户覆盖率, % of households with a linked member).
COVERAGE_BINS = ((0.0, 60.0, "#b2182b", "联户覆盖 < 60%"), (60.0, 90.0, "#ef8a62", "60%–90%"),
                 (90.0, 100.0, "#fddbc7", "90%–<100%"), (100.0, 100.01, "#1a9850", "100%"))


def grid_class(grids: pd.DataFrame) -> np.ndarray:
    """Legend class of every grid (one of the keys in ``CLASSES``).

    A blank grid (空白网格) is classed by its reason — ``blank_reason`` when the table has it,
    otherwise the census ``status`` — before its size; other grids by ``size_status`` (or ``status``).
    """
    n = len(grids)
    status = grids["status"].astype(object).to_numpy() if "status" in grids.columns else np.full(n, STATUS_OK, object)
    if "blank_reason" in grids.columns:
        reason = grids["blank_reason"].astype(object).to_numpy()
        blank = np.array([isinstance(r, str) and r != "" for r in reason])
    else:
        reason = np.where(np.isin(status, [STATUS_NO_BRANCH, STATUS_NO_MEMBERS]), status, None)
        blank = np.array([r is not None for r in reason])
    if "size_status" in grids.columns:
        size = grids["size_status"].astype(object).to_numpy()
    else:
        size = np.where(np.isin(status, [STATUS_OVER, STATUS_UNDER]), status, STATUS_OK)
    out = np.where(blank, reason, size).astype(object)
    known = {k for k, _, _ in CLASSES}
    return np.array([c if c in known else STATUS_OK for c in out], dtype=object)


def _coverage_bin(pct) -> str | None:
    if pct is None or (isinstance(pct, float) and np.isnan(pct)):
        return None
    for i, (lo, hi, _, _) in enumerate(COVERAGE_BINS):
        if lo <= float(pct) < hi:
            return f"c{i}"
    return f"c{len(COVERAGE_BINS) - 1}"


def _val(row, col):
    v = row.get(col)
    return None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v


#: Row labels of a grid's popup (values from :func:`grid_popup_values`).
POPUP_LABELS = ["网格编码", "所属社区", "状态", "户数", "规模标准", "党员数", "党支部", "联户覆盖率", "已联户 / 未联户",
                "需补充党员", "服务圈内（直线1000米）", "服务圈内（步行15分钟）"]
UNLINKED_COLOUR = "#e7298a"


def grid_popup_values(row: dict, cls: str) -> tuple[str, list]:
    """``(title, values)`` of one grid's popup, one value per ``POPUP_LABELS`` (None = row left out)."""
    band = None
    if _val(row, "band_min") is not None and _val(row, "band_max") is not None:
        band = f"{int(row['band_min'])}–{int(row['band_max'])} 户"
    branch = _val(row, "has_branch")
    branch_txt = None if branch is None else ("有" if bool(branch) else "无")
    if branch_txt == "有" and isinstance(_val(row, "branch_name"), str):
        branch_txt = f"有（{row['branch_name']}）"
    linked = None
    if "linked_households" in row:
        linked = f"{fmt_int(_val(row, 'linked_households')) or '—'} / {fmt_int(_val(row, 'unlinked_households')) or '—'}"
    values = [_val(row, "grid_code"), _val(row, "community_code"), CLASS_LABEL.get(cls, cls),
              fmt_int(_val(row, "households")), band, fmt_int(_val(row, "members")), branch_txt,
              fmt_pct(_val(row, "link_coverage_pct")) if "link_coverage_pct" in row else None, linked,
              fmt_int(_val(row, "members_needed"))]
    for col in ("covered_straight", "covered_walk"):
        n, hh = _val(row, col), _val(row, "households")
        values.append(None if n is None else f"{fmt_int(n)} 户" + (f"（{100.0 * n / hh:.0f}%）" if hh else ""))
    name = _val(row, "name")
    title = name if isinstance(name, str) and name.strip() else row["grid_code"]
    return title, values


def coverage_map(grids: gpd.GeoDataFrame, *, communities: gpd.GeoDataFrame | None = None,
                 streets: gpd.GeoDataFrame | None = None, unlinked: gpd.GeoDataFrame | None = None,
                 tiles: str = "osm", tianditu_key: str = "", title: str | None = None, tolerance_m: float = 2.0,
                 max_unlinked_cells: int = 2_000) -> folium.Map:
    """Leaders' coverage map (网格覆盖图) of grids by status, with outlines, legend and popups.

    Parameters
    ----------
    grids : WGS84 grid polygons with the columns of ``census.grid_counts`` (``grid_code``,
        ``households``, ``members``, ``band_min``, ``band_max``, ``status``) and optionally those
        of ``coverage.grid_status`` (``blank_reason``, ``size_status``, ``link_coverage_pct`` …).
    communities, streets : WGS84 polygons (``code``, ``name``) drawn as outlines.
    unlinked : households without a linked member (WGS84 points, e.g.
        :func:`gridmap.coverage.unlinked_households`), drawn as H3 cells with counts (resolution
        10, coarser while more than ``max_unlinked_cells`` cells) in a layer of their own.
    tiles : ``osm|amap|tianditu|none``.
    tianditu_key : Tianditu browser key (needed for ``tianditu`` tiles).
    title : title shown on the map (default 网格覆盖图).
    tolerance_m : simplification tolerance in metres (keeps city-sized maps light).

    Returns
    -------
    folium.Map
    """
    grids = grids.reset_index(drop=True)
    canvas = new_canvas(bounds_of(grids, communities, streets), tiles, tianditu_key=tianditu_key)
    canvas.add_title(title or "网格覆盖图")
    cls = grid_class(grids)
    shown = simplify_m(grids, tolerance_m)
    decimals = 6 if len(grids) < 3000 else 5
    styles = {k: Style(color="#555555", fill_color=c, weight=0.8, fill_opacity=0.62) for k, c, _ in CLASSES}
    names = [n if isinstance(n, str) and n.strip() else c
             for n, c in zip(grids["name"] if "name" in grids.columns else grids["grid_code"], grids["grid_code"])]
    tips = [f"{esc(n)}｜{esc(CLASS_LABEL[c])}" for n, c in zip(names, cls)]
    pops = [grid_popup_values(row, c) for row, c in zip(records(grids), cls)]
    canvas.add_features(shown, name="网格状态", style_keys=cls, styles=styles, tooltips=tips, popups=pops,
                        popup_labels=POPUP_LABELS, decimals=decimals)
    if "link_coverage_pct" in grids.columns:
        keys = [_coverage_bin(p) or "na" for p in grids["link_coverage_pct"]]
        cstyles = {f"c{i}": Style(color="#555555", fill_color=col, weight=0.8, fill_opacity=0.7)
                   for i, (_, _, col, _) in enumerate(COVERAGE_BINS)}
        cstyles["na"] = Style(color="#555555", fill_color="#dddddd", weight=0.8, fill_opacity=0.5)
        ctips = [f"{esc(n)}｜联户覆盖率 {esc(fmt_pct(p) or '无住户')}" for n, p in zip(names, grids["link_coverage_pct"])]
        # tooltips only: the status layer below carries the full popups
        canvas.add_features(shown, name="联户覆盖率", style_keys=keys, styles=cstyles, tooltips=ctips,
                            decimals=decimals, show=False)
    add_outlines(canvas, communities, streets)
    if unlinked is not None and len(unlinked):
        cells = count_cells(unlinked, 10, max_unlinked_cells)
        edge = H3_EDGE_M.get(int(cells["res"].iloc[0]), 1000.0)
        canvas.add_features(cells, name="未联户住户", style_keys=["u"] * len(cells),
                            styles={"u": Style(color=UNLINKED_COLOUR, fill_color=UNLINKED_COLOUR, weight=0.5,
                                               fill_opacity=0.75)},
                            radii_m=np.clip(edge * 0.25 * np.sqrt(cells["count"].to_numpy()), edge * 0.2, edge * 0.9),
                            tooltips=[f"未联户住户 {int(c):,} 户" for c in cells["count"]], show=False,
                            pane="gm-unlinked", pane_z=460)
    counts = pd.Series(cls).value_counts()
    n_blank = int(sum(counts.get(k, 0) for k in (BLANK_BOTH, STATUS_NO_BRANCH, STATUS_NO_MEMBERS)))
    note = f"共 {len(grids):,} 个网格，空白网格 {n_blank:,} 个"
    if "link_coverage_pct" in grids.columns and "households" in grids.columns:
        hh = grids["households"].sum()
        linked = grids["linked_households"].sum() if "linked_households" in grids.columns else np.nan
        if hh:
            note += f"；联户覆盖 {100.0 * linked / hh:.1f}%"
    items = [(c, f"{label}（{int(counts.get(k, 0))}）") for k, c, label in CLASSES]
    if unlinked is not None and len(unlinked):
        items.append((UNLINKED_COLOUR, f"未联户住户（{len(unlinked):,} 户，图层可选）"))
    canvas.add_legend("网格状态", items, note=note)
    return canvas.finish()
