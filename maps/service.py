"""Service-radius map (15分钟服务圈): service centres, their circles and walking areas, gaps, new sites.

Draws what :mod:`gridmap.coverage` and :mod:`gridmap.siting` compute:

* service centres (党群服务中心, ``centre_id``, ``name``, ``radius_m``) with their straight-line
  circle drawn true to size (Leaflet circles in metres; default 1,000 m);
* walking areas (``coverage.walking_areas``: ``centre_id`` + polygon), simplified to 8 m;
* uncovered households aggregated into H3 cells (``coverage.gap_cells``: ``h3``, ``households``,
  ``gap_id``, ``gap_households``), shaded by households — coarsened to parent cells when there are
  more than ``max_cells`` so a city-sized map stays light;
* proposed new sites (``siting.choose_sites``: ``site_id``, ``rank``, ``newly_covered``, ``reach``)
  with their would-be circles.

All inputs WGS84; distances metres.
"""

from __future__ import annotations

import folium
import geopandas as gpd
import h3
import numpy as np
import pandas as pd

from gridmap.cells import cell_polygon, to_signed, to_unsigned
from gridmap.contract import SERVICE_RADIUS_M, WGS84
from maps.base import (Style, add_outlines, bounds_of, esc, fmt_int, new_canvas, records, simplify_m, table_html)

#: Most gap cells drawn before they are merged into parent cells.
MAX_CELLS = 6_000

GAP_COLOURS = ("#fee5d9", "#fcae91", "#fb6a4a", "#de2d26", "#a50f15")
CENTRE_COLOUR = "#08519c"
WALK_COLOUR = "#2ca25f"
SITE_COLOUR = "#7a0177"


def coarsen_cells(cells: pd.DataFrame, max_cells: int = MAX_CELLS) -> pd.DataFrame:
    """Merge gap cells into parent H3 cells (summing ``households``) until at most ``max_cells`` remain.

    Returns a DataFrame with ``h3`` (int64), ``households``, ``res`` and, when all input cells of a
    parent belong to one gap, that ``gap_id``/``gap_households``; geometry is rebuilt by the caller.
    """
    df = pd.DataFrame({"h3": np.asarray(cells["h3"], dtype=np.int64), "households": np.asarray(cells["households"])})
    for extra in ("gap_id", "gap_households"):
        if extra in cells.columns:
            df[extra] = np.asarray(cells[extra])
    if len(df) == 0:
        df["res"] = np.zeros(0, int)
        return df
    res = h3.get_resolution(h3.int_to_str(int(to_unsigned(df["h3"].to_numpy()[:1])[0])))
    while len(df) > max_cells and res > 0:
        res -= 1
        parents = np.array([h3.str_to_int(h3.cell_to_parent(h3.int_to_str(int(c)), res))
                            for c in to_unsigned(df["h3"].to_numpy())], dtype=np.uint64)
        df["h3"] = to_signed(parents)
        agg = {"households": "sum"}
        if "gap_id" in df.columns:
            agg.update(gap_id="min", gap_households="max")
        df = df.groupby("h3", as_index=False).agg(agg)
    df["res"] = res
    return df


def _breaks(values: np.ndarray) -> np.ndarray:
    """Up to five class breaks (upper bounds) for household counts, from quantiles, strictly rising."""
    if values.size == 0:
        return np.array([1])
    qs = np.unique(np.ceil(np.quantile(values, [0.2, 0.4, 0.6, 0.8, 1.0])).astype(int))
    return qs


def _draw_gap_cells(canvas, gap_cells: gpd.GeoDataFrame, max_cells: int) -> list[tuple[str, str]]:
    """Gap cells coloured by households outside the circle; returns their legend items."""
    items: list[tuple[str, str]] = []
    cells = coarsen_cells(gap_cells, max_cells)
    geoms = [cell_polygon(int(c)) for c in to_unsigned(cells["h3"].to_numpy())]
    cg = gpd.GeoDataFrame(cells, geometry=geoms, crs=WGS84)
    hh = cg["households"].to_numpy()
    br = _breaks(hh)
    keys = np.searchsorted(br, hh, side="left").clip(0, len(br) - 1)
    colours = GAP_COLOURS[-len(br):] if len(br) <= len(GAP_COLOURS) else GAP_COLOURS
    styles = {f"q{i}": Style(color=colours[i], fill_color=colours[i], weight=0.3, fill_opacity=0.72)
              for i in range(len(br))}
    tips = []
    gap_id = cg["gap_id"].to_numpy() if "gap_id" in cg.columns else np.full(len(cg), np.nan)
    gap_hh = cg["gap_households"].to_numpy() if "gap_households" in cg.columns else np.full(len(cg), np.nan)
    for h, gi, gh in zip(hh, gap_id, gap_hh):
        t = f"服务圈外 {fmt_int(h)} 户"
        if pd.notna(gi):
            t += f"｜盲区 #{int(gi)}（共 {fmt_int(gh)} 户）"
        tips.append(esc(t))
    canvas.add_features(cg, name="服务盲区（按户数）", style_keys=[f"q{k}" for k in keys], styles=styles,
                        tooltips=tips, decimals=5)
    basis = str(gap_cells["basis"].iloc[0]) if "basis" in gap_cells.columns else "straight"
    what = "步行15分钟圈外住户" if basis == "walking" else "直线服务圈外住户"
    lo = 1
    for i, hi in enumerate(br):
        items.append((colours[i], f"{what} {lo}–{hi} 户/格" if hi > lo else f"{what} {hi} 户/格"))
        lo = hi + 1
    return items


def _draw_sites(canvas, sites: gpd.GeoDataFrame, radius_m: float) -> None:
    """Suggested new sites: their circles (metres) and numbered points (rank = priority)."""
    s_r = (pd.to_numeric(sites["radius_m"], errors="coerce").fillna(radius_m).to_numpy()
           if "radius_m" in sites.columns else np.full(len(sites), float(radius_m)))
    canvas.add_features(sites, name="建议新增站点服务圈", style_keys=["sc"] * len(sites),
                        styles={"sc": Style(color=SITE_COLOUR, fill_color=SITE_COLOUR, weight=1.5,
                                            fill_opacity=0.05, dash="6 4")}, radii_m=s_r)
    s_pops = [table_html(f"建议新增站点 #{r.get('rank') or i + 1}",
                         [("候选点", r.get("site_id")), ("新增覆盖", f"{fmt_int(r.get('newly_covered')) or '—'} 户"),
                          ("单独覆盖", f"{fmt_int(r.get('reach')) or '—'} 户"), ("服务半径", f"{rr:,.0f} 米")])
              for i, (r, rr) in enumerate(zip(records(sites), s_r))]
    ranks = sites["rank"].to_numpy() if "rank" in sites.columns else np.arange(1, len(sites) + 1)
    canvas.add_features(sites, name="建议新增站点", style_keys=["s"] * len(sites),
                        styles={"s": Style(color="#ffffff", fill_color=SITE_COLOUR)}, numbers=ranks,
                        tooltips=[f"建议新增站点 #{int(k)}" for k in ranks], popups=s_pops)


# More than ten arguments on purpose: the layers and options of the service-circle map, by keyword.
def service_map(centres: gpd.GeoDataFrame, *, gap_cells: gpd.GeoDataFrame | None = None,  # noqa: PLR0913
                walking_areas: gpd.GeoDataFrame | None = None, sites: gpd.GeoDataFrame | None = None,
                grids: gpd.GeoDataFrame | None = None, communities: gpd.GeoDataFrame | None = None,
                streets: gpd.GeoDataFrame | None = None, radius_m: float = SERVICE_RADIUS_M,
                coverage_pct: float | None = None, walk_coverage_pct: float | None = None,
                tiles: str = "osm", tianditu_key: str = "", title: str | None = None, max_cells: int = MAX_CELLS) -> folium.Map:
    """15-minute service-circle map.

    Parameters
    ----------
    centres : WGS84 points with ``centre_id`` (optional ``name``, ``kind``, ``radius_m`` in metres).
    gap_cells : H3 cells of uncovered households (``h3``, ``households``; optional ``gap_id``,
        ``gap_households``), e.g. :func:`gridmap.coverage.gap_cells`.
    walking_areas : WGS84 polygons per centre (``centre_id``), e.g. :func:`gridmap.coverage.walking_areas`.
    sites : proposed sites, WGS84 points (``site_id``, ``rank``, ``newly_covered``, ``reach``,
        optional ``radius_m``), e.g. :func:`gridmap.siting.choose_sites`.
    grids, communities, streets : optional outlines.
    tianditu_key : Tianditu browser key (needed for ``tianditu`` tiles).
    radius_m : straight-line radius in metres for centres/sites without ``radius_m``.
    coverage_pct, walk_coverage_pct : headline shares (0–100) printed in the legend when given.
    max_cells : more gap cells than this are merged into parent cells.
    """
    layers = [centres, gap_cells, walking_areas, sites, grids, communities, streets]
    minx, miny, maxx, maxy = bounds_of(*layers)
    # the view must hold the whole circles: widen by the largest radius (metres → degrees at this latitude)
    r = float(np.nanmax(pd.to_numeric(centres["radius_m"], errors="coerce").fillna(radius_m))) \
        if "radius_m" in centres.columns and len(centres) else float(radius_m)
    dlat = r / 111_320.0
    dlon = r / (111_320.0 * max(np.cos(np.radians((miny + maxy) / 2.0)), 0.1))
    canvas = new_canvas((minx - dlon, miny - dlat, maxx + dlon, maxy + dlat), tiles, tianditu_key=tianditu_key)
    canvas.add_title(title or "15分钟服务圈")
    if grids is not None and len(grids):
        g = simplify_m(grids, 2.0)
        canvas.add_features(g, name="网格", style_keys=["g"] * len(g),
                            styles={"g": Style(color="#7a7a7a", weight=0.6, fill=False, fill_opacity=0)},
                            tooltips=[f"网格：{esc(n)}" for n in (g["name"] if "name" in g.columns else g["grid_code"])],
                            decimals=5 if len(g) > 3000 else 6)
    legend = []
    if gap_cells is not None and len(gap_cells):
        legend.extend(_draw_gap_cells(canvas, gap_cells, max_cells))
    if walking_areas is not None and len(walking_areas):
        wa = simplify_m(walking_areas[~walking_areas.geometry.is_empty], 8.0)
        canvas.add_features(wa, name="步行15分钟范围", style_keys=["w"] * len(wa),
                            styles={"w": Style(color=WALK_COLOUR, fill_color=WALK_COLOUR, weight=1.2,
                                               fill_opacity=0.12)},
                            tooltips=[f"步行可达范围：{esc(c)}" for c in wa["centre_id"]], decimals=5)
        legend.append((WALK_COLOUR, "步行15分钟可达范围"))
    names = centres["name"] if "name" in centres.columns else centres["centre_id"]
    radii = (pd.to_numeric(centres["radius_m"], errors="coerce").fillna(radius_m).to_numpy()
             if "radius_m" in centres.columns else np.full(len(centres), float(radius_m)))
    canvas.add_features(centres, name="服务圈（直线半径）", style_keys=["c"] * len(centres),
                        styles={"c": Style(color=CENTRE_COLOUR, fill_color=CENTRE_COLOUR, weight=1.2,
                                           fill_opacity=0.06)},
                        radii_m=radii, tooltips=[f"{esc(n)}｜半径 {r:,.0f} 米" for n, r in zip(names, radii)])
    pops = [table_html(n, [("编号", r["centre_id"]), ("类型", r.get("kind")), ("服务半径", f"{rad:,.0f} 米")])
            for n, r, rad in zip(names, records(centres), radii)]
    canvas.add_features(centres, name="党群服务中心", style_keys=["p"] * len(centres),
                        styles={"p": Style(color="#ffffff", fill_color=CENTRE_COLOUR, weight=1.5, fill_opacity=1.0,
                                           radius=6)},
                        tooltips=[esc(n) for n in names], popups=pops, pane="gm-points", pane_z=460)
    legend.insert(0, (CENTRE_COLOUR, "党群服务中心及直线服务圈"))
    if sites is not None and len(sites):
        _draw_sites(canvas, sites, radius_m)
        legend.append((SITE_COLOUR, "建议新增站点（序号=优先级）"))
    add_outlines(canvas, communities, streets)
    notes = [f"服务中心 {len(centres):,} 个"]
    if coverage_pct is not None:
        notes.append(f"直线{radius_m:,.0f}米覆盖 {coverage_pct:.1f}% 住户")
    if walk_coverage_pct is not None:
        notes.append(f"步行15分钟覆盖 {walk_coverage_pct:.1f}% 住户")
    if gap_cells is not None and len(gap_cells):
        notes.append(f"圈外住户 {int(np.asarray(gap_cells['households']).sum()):,} 户")
    canvas.add_legend("服务圈覆盖", legend, note="；".join(notes))
    return canvas.finish()
