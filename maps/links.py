"""Linkage map (包片联户图): lines from each party member to the households they visit, in order.

Reads the links of :func:`gridmap.linkage.link_households` (``household_id``, ``member_id``,
``distance_m`` in metres, ``visit_order`` — 1 is the first stop) with the household and member
points (WGS84). One map covers one grid (``grid_code``: its members, their households, and the
grid's unlinked households) or one member (``member_id``: a responder's own map — only that
member's households are put into the page at all).

Residents' names are personal data: shown masked (``张*``) unless ``show_names`` — for a
responder's own printed list — and always HTML-escaped.
"""

from __future__ import annotations

from dataclasses import dataclass

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gridmap.contract import WGS84
from gridmap.privacy import mask_name
from maps.base import MapError, Style, bounds_of, esc, fmt_int, new_canvas, records, simplify_m, table_html

PALETTE = ("#1f78b4", "#e31a1c", "#33a02c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3", "#fb9a99", "#b2df8a",
           "#fdbf6f", "#cab2d6", "#17becf")
UNLINKED_COLOUR = "#7f7f7f"
#: A links map is for one grid or one member; more households than this asks for a narrower view.
MAX_HOUSEHOLDS = 5_000
#: Numbered badges are page elements (slow by the thousand); above this many, households are canvas
#: dots and the visiting order is in their tooltip.
MAX_NUMBERED = 800


def _person(name, show_names: bool):
    if not isinstance(name, str) or not name.strip():
        return None
    return name if show_names else mask_name(name)


def _tags(v):
    if isinstance(v, (list, tuple, np.ndarray)):
        return "、".join(str(x) for x in v) or None
    return v if isinstance(v, str) and v else None


def select_links(links: pd.DataFrame, households: gpd.GeoDataFrame, members: gpd.GeoDataFrame, *,
                 grid_code: str | None = None, member_id: str | None = None):
    """The links, households and members one map shows.

    With ``member_id`` only that member and the households linked to them; with ``grid_code`` the
    grid's households (linked or not), the members linked to them and the grid's own members.
    Raises :class:`MapError` when the member or grid is unknown.
    """
    links = links[["household_id", "member_id"] + [c for c in ("distance_m", "visit_order") if c in links.columns]]
    if member_id is not None:
        if not (members["member_id"].astype(str) == str(member_id)).any():
            raise MapError(f"no member {member_id!r}")
        lk = links[links["member_id"].astype(str) == str(member_id)]
        hh = households[households["household_id"].isin(lk["household_id"])]
        mm = members[members["member_id"].astype(str) == str(member_id)]
        return lk, hh, mm
    if grid_code is not None:
        if "grid_code" not in households.columns:
            raise MapError("households carry no grid_code: cannot select a grid")
        hh = households[households["grid_code"].astype(str) == str(grid_code)]
        in_grid_members = (members["grid_code"].astype(str) == str(grid_code)) if "grid_code" in members.columns \
            else pd.Series(False, index=members.index)
        if len(hh) == 0 and not in_grid_members.any():
            raise MapError(f"no households or members in grid {grid_code!r}")
        lk = links[links["household_id"].isin(hh["household_id"])]
        mm = members[members["member_id"].isin(lk["member_id"]) | in_grid_members]
        return lk, hh, mm
    return links, households, members


@dataclass
class _Drawn:
    """What the layers of one links map share: the selection and each link's positions and figures."""

    lk: pd.DataFrame
    hh: gpd.GeoDataFrame
    mm: gpd.GeoDataFrame
    hi: np.ndarray  # household position of each link
    mi: np.ndarray  # member position of each link
    order: np.ndarray  # visiting order of each link (NaN unknown)
    dist: np.ndarray  # metres of each link (NaN unknown)
    colour_key: dict
    colour_styles: dict


def _outline(grids, grid_code, member_id, mm) -> gpd.GeoDataFrame | None:
    """The selected grid, or the member's grid(s), to outline; None when there is none."""
    if grids is None or not len(grids):
        return None
    codes = {grid_code} if grid_code is not None else set(mm["grid_code"].dropna().astype(str)) \
        if "grid_code" in mm.columns and member_id is not None else set()
    return grids[grids["grid_code"].astype(str).isin(codes)] if codes else None


def _prepare(lk, hh, mm) -> _Drawn:
    hh = hh.reset_index(drop=True)
    mm = mm.reset_index(drop=True)
    hpos = pd.Series(np.arange(len(hh)), index=hh["household_id"].to_numpy())
    mpos = pd.Series(np.arange(len(mm)), index=mm["member_id"].to_numpy())
    lk = lk[lk["household_id"].isin(hpos.index) & lk["member_id"].isin(mpos.index)].reset_index(drop=True)
    order = pd.to_numeric(lk["visit_order"], errors="coerce").to_numpy() if "visit_order" in lk.columns \
        else np.full(len(lk), np.nan)
    dist = pd.to_numeric(lk["distance_m"], errors="coerce").to_numpy() if "distance_m" in lk.columns \
        else np.full(len(lk), np.nan)
    return _Drawn(lk=lk, hh=hh, mm=mm, hi=hpos[lk["household_id"]].to_numpy(), mi=mpos[lk["member_id"]].to_numpy(),
                  order=order, dist=dist,
                  colour_key={m: f"m{i % len(PALETTE)}" for i, m in enumerate(mm["member_id"])},
                  colour_styles={f"m{i}": c for i, c in enumerate(PALETTE)})


def _draw_spokes_and_routes(canvas, d: _Drawn) -> None:
    """A line per link, and one visiting route per member: home, then households in visiting order."""
    lk, colour_key = d.lk, d.colour_key
    hx, hy = d.hh.geometry.x.to_numpy(), d.hh.geometry.y.to_numpy()
    mx, my = d.mm.geometry.x.to_numpy(), d.mm.geometry.y.to_numpy()
    hi, mi = d.hi, d.mi
    spokes = shapely.linestrings(np.stack([np.column_stack([mx[mi], my[mi]]), np.column_stack([hx[hi], hy[hi]])],
                                          axis=1))
    sg = gpd.GeoDataFrame({"member_id": lk["member_id"].to_numpy()}, geometry=spokes, crs=WGS84)
    tips = [f"{esc(m)} → {esc(h)}｜第 {esc(fmt_int(o) or '—')} 户｜{esc(fmt_int(dm) or '—')} 米"
            for m, h, o, dm in zip(lk["member_id"], lk["household_id"], d.order, d.dist)]
    canvas.add_features(sg, name="联系线", style_keys=[colour_key[m] for m in lk["member_id"]],
                        styles={k: Style(color=c, weight=1.6, opacity=0.85, fill=False)
                                for k, c in d.colour_styles.items()}, tooltips=tips)
    routes, r_members = [], []
    frame = pd.DataFrame({"m": mi, "h": hi, "o": np.where(np.isfinite(d.order), d.order, np.inf)})
    for m, grp in frame.sort_values(["m", "o"], kind="stable").groupby("m", sort=True):
        pts = [(mx[m], my[m])] + [(hx[h], hy[h]) for h in grp["h"]]
        if len(pts) >= 2:
            routes.append(shapely.LineString(pts))
            r_members.append(d.mm["member_id"].iloc[m])
    if routes:
        rg = gpd.GeoDataFrame({"member_id": r_members}, geometry=routes, crs=WGS84)
        canvas.add_features(rg, name="走访路线", style_keys=[colour_key[m] for m in r_members],
                            styles={k: Style(color=c, weight=2.5, opacity=0.6, fill=False, dash="2 6")
                                    for k, c in d.colour_styles.items()},
                            tooltips=[f"{esc(m)} 的走访路线" for m in r_members], show=False)


def _household_marks(d: _Drawn, show_names: bool) -> tuple[list, list, list, list]:
    """Legend key, badge number (visiting order, 0 none), tooltip and popup of every household."""
    order, dist = d.order, d.dist
    link_of = pd.Series(np.arange(len(d.lk)), index=d.lk["household_id"].to_numpy())
    keys, nums, tips, pops = [], [], [], []
    for row in records(d.hh):
        h = row["household_id"]
        g = row.get
        if h in link_of.index:
            j = link_of[h]
            m = d.lk["member_id"].iloc[j]
            keys.append(d.colour_key[m])
            nums.append(int(order[j]) if np.isfinite(order[j]) else 0)
            tips.append(f"{esc(h)}｜{esc(m)} 第 {esc(fmt_int(order[j]) or '—')} 户")
            extra = [("联系党员", m), ("走访顺序", fmt_int(order[j])),
                     ("距离", f"{fmt_int(dist[j])} 米" if np.isfinite(dist[j]) else None)]
        else:
            keys.append("u")
            nums.append(0)
            tips.append(f"{esc(h)}｜未联户")
            extra = [("联系党员", "未联户")]
        pops.append(table_html(f"住户 {h}", [("户主", _person(g("name"), show_names)), ("人口", fmt_int(g("size"))),
                                            ("标签", _tags(g("tags"))), ("网格", g("grid_code"))] + extra))
    return keys, nums, tips, pops


def _draw_households(canvas, d: _Drawn, show_names: bool) -> np.ndarray:
    """Households as a numbered badge (visiting order) in the member's colour, unlinked ones grey;
    returns which households are linked."""
    keys, nums, tips, pops = _household_marks(d, show_names)
    hh = d.hh
    hstyles = {k: Style(color="#ffffff", fill_color=c, radius=6, fill_opacity=1.0) for k, c in d.colour_styles.items()}
    hstyles["u"] = Style(color="#ffffff", fill_color=UNLINKED_COLOUR, radius=5, fill_opacity=1.0)
    linked = np.array([k != "u" for k in keys], dtype=bool)
    if linked.any():
        numbered = int(linked.sum()) <= MAX_NUMBERED
        canvas.add_features(hh[linked], name="联系户（数字=走访顺序）" if numbered else "联系户",
                            style_keys=np.array(keys, object)[linked],
                            styles=hstyles, numbers=np.array(nums)[linked] if numbered else None,
                            tooltips=np.array(tips, object)[linked], popups=np.array(pops, object)[linked])
    if (~linked).any():
        canvas.add_features(hh[~linked], name="未联户住户", style_keys=np.array(keys, object)[~linked],
                            styles=hstyles, tooltips=np.array(tips, object)[~linked],
                            popups=np.array(pops, object)[~linked], pane="gm-points", pane_z=460)
    return linked


def _draw_members(canvas, d: _Drawn, load: pd.Series, show_names: bool) -> None:
    m_pops, m_tips = [], []
    for row in records(d.mm):
        g = row.get
        m_pops.append(table_html(f"党员 {row['member_id']}", [
            ("姓名", _person(g("name"), show_names)), ("技能", _tags(g("skills"))), ("网格", g("grid_code")),
            ("联系户数", fmt_int(load.get(row["member_id"], 0)))]))
        m_tips.append(f"党员 {esc(row['member_id'])}｜联系 {int(load.get(row['member_id'], 0))} 户")
    canvas.add_features(d.mm, name="党员", style_keys=[d.colour_key[m] for m in d.mm["member_id"]],
                        styles={k: Style(color="#000000", fill_color=c, weight=2.5, radius=9, fill_opacity=1.0)
                                for k, c in d.colour_styles.items()},
                        tooltips=m_tips, popups=m_pops, pane="gm-members", pane_z=470)


def _add_links_legend(canvas, d: _Drawn, load: pd.Series, linked: np.ndarray) -> None:
    mm = d.mm
    note = f"党员 {len(mm):,} 名，住户 {len(d.hh):,} 户，已联户 {int(linked.sum()):,} 户"
    if np.isfinite(d.dist).any():
        note += f"，平均距离 {np.nanmean(d.dist):,.0f} 米"
    items = [(PALETTE[int(d.colour_key[m][1:])], f"党员 {m}（{int(load.get(m, 0))} 户）") for m in mm["member_id"][:12]]
    if len(mm) > 12:
        items.append(("#ffffff", f"…… 另有 {len(mm) - 12} 名党员"))
    if (~linked).any():
        items.append((UNLINKED_COLOUR, f"未联户住户（{int((~linked).sum())}）"))
    canvas.add_legend("包片联户", items, note=note)


def links_map(links: pd.DataFrame, households: gpd.GeoDataFrame, members: gpd.GeoDataFrame, *,  # noqa: PLR0913
              grid_code: str | None = None, member_id: str | None = None, grids: gpd.GeoDataFrame | None = None,
              tiles: str = "osm", tianditu_key: str = "", title: str | None = None, show_names: bool = False,
              max_households: int = MAX_HOUSEHOLDS) -> folium.Map:
    """Member → household lines with visiting order, for one grid or one member.

    (The keyword options are the map's public face, passed straight from the command and the use
    case; hence more than ten arguments.)

    Parameters
    ----------
    links : ``household_id``, ``member_id``, ``distance_m`` (metres), ``visit_order``.
    households : WGS84 points (``household_id``; optional ``grid_code``, ``name``, ``size``, ``tags``).
    members : WGS84 points (``member_id``; optional ``grid_code``, ``name``, ``skills``).
    grid_code, member_id : what to show (see :func:`select_links`); with neither, everything,
        up to ``max_households``.
    grids : WGS84 grid polygons; the selected grid (or the member's grid) is outlined.
    show_names : show residents' and members' names unmasked (responder's own list); masked otherwise.
    tianditu_key : Tianditu browser key (needed for ``tianditu`` tiles).
    """
    lk, hh, mm = select_links(links, households, members, grid_code=grid_code, member_id=member_id)
    if len(hh) > max_households:
        raise MapError(f"{len(hh):,} households: choose one grid (--grid) or one member (--member) for a links map")
    d = _prepare(lk, hh, mm)
    outline = _outline(grids, grid_code, member_id, d.mm)
    canvas = new_canvas(bounds_of(d.hh, d.mm, outline), tiles, tianditu_key=tianditu_key)
    default_title = (f"包片联户：网格 {grid_code}" if grid_code is not None else
                     f"包片联户：党员 {member_id} 的联系户" if member_id is not None else "包片联户")
    canvas.add_title(title or default_title)
    if outline is not None and len(outline):
        o = simplify_m(outline, 1.0)
        canvas.add_features(o, name="网格", style_keys=["g"] * len(o),
                            styles={"g": Style(color="#333333", weight=2.0, fill=True, fill_color="#ffffff",
                                               fill_opacity=0.15)},
                            tooltips=[f"网格：{esc(n)}" for n in (o["name"] if "name" in o.columns else o["grid_code"])])
    if len(d.lk):
        _draw_spokes_and_routes(canvas, d)
    linked = _draw_households(canvas, d, show_names)
    load = d.lk["member_id"].value_counts()
    _draw_members(canvas, d, load, show_names)
    _add_links_legend(canvas, d, load, linked)
    return canvas.finish()
