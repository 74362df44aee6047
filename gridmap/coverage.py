"""Coverage gaps: blank grids, unlinked households and the 15-minute service circle.

Three questions a street's party committee asks (seeds 001/002):

* **Which grids are blank?** A 空白网格 is a grid with no party branch, or with households but no
  party member. :func:`grid_status` extends :func:`gridmap.census.grid_counts` with the reason,
  linked households, link coverage, members still needed and the size status.
* **Which households have no member?** (包片联户 gaps) :func:`unlinked_households` — from the linkage
  engine's links when given, otherwise estimated from the nearest member of the household's grid
  and the members' capacity.
* **Who lies outside the 15-minute service circle (15分钟服务圈)?** :func:`straight_line_coverage`
  (1,000 m straight line, or each centre's ``radius_m``) and :func:`walking_coverage` (1,200 m
  along walkable roads, via :mod:`gridmap.walknet`). :func:`gap_cells` merges the households
  outside into H3 cells and connected gap areas with their household counts.

All inputs are GeoDataFrames in WGS84 (EPSG:4326); every distance is in metres. Straight-line
distances are great-circle (haversine) distances — a KD-tree in UTM only preselects candidates,
with a safety margin, so the result is exactly the haversine answer.
"""

from __future__ import annotations

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely
from pyproj import Transformer
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from gridmap.cells import cell_polygon, points_to_cells, to_signed, to_unsigned
from gridmap.census import (
    STATUS_OK,
    STATUS_OVER,
    STATUS_UNDER,
    assign_grid_codes,
    grid_counts,
)
from gridmap.contract import (
    H3_POINT_RES,
    MAX_LINKS,
    SERVICE_RADIUS_M,
    UNLINKED_FULL,
    UNLINKED_NO_GRID,
    UNLINKED_NO_MEMBER,
    UNLINKED_NOT_LINKED,
    UNLINKED_TOO_FAR,
    WGS84,
)
from gridmap.metric import haversine_m, utm_epsg

#: Why a grid is blank (空白网格).
BLANK_NO_BRANCH = "no branch"
BLANK_NO_MEMBERS = "no members"
BLANK_BOTH = "no branch, no members"

# Why a household is unlinked (无联系党员): the contract's codes, shared with the linkage engine
# (Chinese labels for display in ``gridmap.contract.UNLINKED_LABELS``).

#: Relative slack on the UTM pre-selection radius. UTM distances (ellipsoid, scale ≤ 1.001 inside
#: a zone) differ from haversine ones (mean-radius sphere) by under 0.5 % in any direction at
#: Chinese latitudes, so 1 % (plus 1 m) can never miss a point the haversine distance puts inside.
_PRESELECT_SLACK = 0.01


# helpers ---------------------------------------------------------------------------------------

def _lonlat(points: gpd.GeoDataFrame) -> np.ndarray:
    """``(n, 2)`` lon/lat degrees of a WGS84 point layer (multi-points: their first point)."""
    if len(points) == 0:
        return np.zeros((0, 2))
    geom = points.geometry.values
    if points.crs is not None and not points.crs.equals(WGS84):
        geom = points.geometry.to_crs(WGS84).values
    single = shapely.get_point(geom, 0) if (shapely.get_type_id(geom) == 4).any() else geom
    return np.column_stack([shapely.get_x(single), shapely.get_y(single)])


class _Projector:
    """Fast WGS84 → UTM (metres) for arrays, fixed to one zone so all layers share a plane."""

    def __init__(self, lonlat: np.ndarray):
        if lonlat.shape[0]:
            lon, lat = np.nanmedian(lonlat[:, 0]), np.nanmedian(lonlat[:, 1])
        else:
            lon, lat = 120.0, 30.0
        self.crs = f"EPSG:{utm_epsg(lon, lat)}"
        self._t = Transformer.from_crs(WGS84, self.crs, always_xy=True)

    def __call__(self, lonlat: np.ndarray) -> np.ndarray:
        if lonlat.shape[0] == 0:
            return np.zeros((0, 2))
        x, y = self._t.transform(lonlat[:, 0], lonlat[:, 1])
        return np.column_stack([x, y])


def _with_grid_codes(points: gpd.GeoDataFrame | None, grids: gpd.GeoDataFrame) -> gpd.GeoDataFrame | None:
    """Points with ``grid_code`` (filled by point-in-polygon only where missing)."""
    if points is None:
        return None
    if "grid_code" in points.columns and not points["grid_code"].isna().any():
        return points
    return assign_grid_codes(points, grids)


def _radii(centres: gpd.GeoDataFrame, radius_m: float | None) -> np.ndarray:
    """Per-centre radius in metres: the centre's ``radius_m`` where given, else ``radius_m``."""
    default = SERVICE_RADIUS_M if radius_m is None else float(radius_m)
    if "radius_m" in centres.columns:
        r = pd.to_numeric(centres["radius_m"], errors="coerce").to_numpy(dtype=float)
        return np.where(np.isfinite(r) & (r > 0), r, default)
    return np.full(len(centres), default)


# unlinked households ---------------------------------------------------------------------------

def unlinked_households(households: gpd.GeoDataFrame, members: gpd.GeoDataFrame | None,
                        links: pd.DataFrame | None = None, *, grids: gpd.GeoDataFrame | None = None,
                        max_link_distance_m: float | None = None, max_links: int = MAX_LINKS,
                        all_rows: bool = False, with_h3: bool = True) -> gpd.GeoDataFrame:
    """Households without a linked party member (包片联户 gaps), with the reason.

    Parameters
    ----------
    households, members : WGS84 points with ``household_id`` / ``member_id`` and ``grid_code``
        (filled from ``grids`` by point-in-polygon where missing).
    links : the linkage engine's output (``household_id``, ``member_id``, optional ``distance_m``).
        When given, a household is unlinked if it has no link (reason ``no_member_in_grid`` when
        its grid has no member, else ``not_linked``) or its link is longer than
        ``max_link_distance_m`` (``member_too_far``). When ``None`` the links are *estimated*: each
        grid's members take up to ``max_links`` households each, nearest first; households of a
        grid without members, beyond capacity (``members_full``) or whose nearest in-grid member is
        farther than ``max_link_distance_m`` (``member_too_far``) are unlinked.
    max_link_distance_m : farthest acceptable member–household distance in metres (haversine);
        ``None`` means no limit.
    max_links : households one member can take (policy: 10).
    all_rows : return every household (with ``linked`` true/false) instead of only the unlinked.
    with_h3 : add the ``h3`` column (res 10, int64) to the rows returned.

    Returns
    -------
    GeoDataFrame (WGS84 points) with ``household_id``, ``grid_code``, ``reason``, ``member_id``
    (the link or the nearest in-grid member, if any), ``distance_m`` (metres) and ``h3``.
    """
    if grids is not None:
        households = _with_grid_codes(households, grids)
        members = _with_grid_codes(members, grids)
    hh_grid, reason, member_id, dist = _link_state(households, members, links, max_link_distance_m, max_links)
    rows = slice(None) if all_rows else np.flatnonzero(~pd.isna(reason))
    out = gpd.GeoDataFrame({
        "household_id": households["household_id"].to_numpy()[rows],
        "grid_code": hh_grid[rows],
        "reason": reason[rows],
        "member_id": member_id[rows],
        "distance_m": dist[rows],
    }, geometry=households.geometry.values[rows], crs=WGS84)
    if all_rows:
        out.insert(2, "linked", pd.isna(reason))
    if with_h3:
        ll = _lonlat(out)
        out["h3"] = to_signed(points_to_cells(ll[:, 0], ll[:, 1], H3_POINT_RES)) if len(out) else np.zeros(0, np.int64)
    return out


def _link_state(households, members, links, max_link_distance_m, max_links):
    """Per household: ``(grid_code, reason or None, member_id, distance_m)`` arrays.

    See :func:`unlinked_households` for the rules.
    """
    n = len(households)
    hh_grid = households["grid_code"].to_numpy(dtype=object) if "grid_code" in households.columns \
        else np.full(n, None, dtype=object)
    has_mem = members is not None and len(members) > 0
    mem_grid = members["grid_code"] if has_mem else pd.Series([], dtype=object)
    no_grid = pd.isna(hh_grid)
    grid_has_member = (households["grid_code"].isin(mem_grid.dropna().unique()).to_numpy()
                       if "grid_code" in households.columns else np.zeros(n, dtype=bool))
    reason = np.full(n, None, dtype=object)
    member_id = np.full(n, None, dtype=object)
    dist = np.full(n, np.nan)
    if links is not None:
        lk = links.drop_duplicates("household_id", keep="first").set_index("household_id")
        hid = households["household_id"]
        member_id = hid.map(lk["member_id"]).to_numpy(dtype=object)
        if "distance_m" in lk.columns:
            dist = pd.to_numeric(hid.map(lk["distance_m"]), errors="coerce").to_numpy(dtype=float)
        elif has_mem:
            mpos = pd.Series(np.arange(len(members)), index=members["member_id"].to_numpy())
            pos = pd.Series(member_id).map(mpos).to_numpy()
            ok = ~pd.isna(pos)
            if ok.any():
                hh_ll = _lonlat(households)
                mll = _lonlat(members)[pos[ok].astype(int)]
                dist[ok] = haversine_m(hh_ll[ok, 0], hh_ll[ok, 1], mll[:, 0], mll[:, 1])
        unlinked = pd.isna(member_id)
        reason[unlinked] = UNLINKED_NOT_LINKED
        reason[unlinked & ~grid_has_member] = UNLINKED_NO_MEMBER
        reason[unlinked & no_grid] = UNLINKED_NO_GRID
        if max_link_distance_m is not None:
            reason[~unlinked & (dist > max_link_distance_m)] = UNLINKED_TOO_FAR
    else:
        reason[~grid_has_member] = UNLINKED_NO_MEMBER
        reason[no_grid] = UNLINKED_NO_GRID
        if has_mem:
            _estimate_links(households, members, hh_grid, grid_has_member & ~no_grid, reason, member_id, dist,
                            max_link_distance_m, max_links)
    return hh_grid, reason, member_id, dist


def _estimate_links(households, members, hh_grid, eligible, reason, member_id, dist, max_link_distance_m, max_links):
    """Nearest in-grid member per household, then per-grid capacity (members × ``max_links``); fills in place.

    Within a grid the households nearest to a member keep their member; the farthest beyond the
    capacity are ``members_full``. This is an estimate of what the linkage engine would achieve.
    One KD-tree answers every grid at once: each grid is shifted by its own large offset
    (10,000 km apart), so the nearest member found is always one of the same grid.
    """
    m_grid = members["grid_code"].to_numpy(dtype=object)
    m_ok = ~pd.isna(m_grid)
    if not m_ok.any() or not eligible.any():
        return
    hidx = np.flatnonzero(eligible)
    hh_ll = _lonlat(households)[hidx]
    m_ll = _lonlat(members)[m_ok]
    m_ids = members["member_id"].to_numpy(dtype=object)[m_ok]
    codes, uniq = pd.factorize(np.concatenate([m_grid[m_ok], hh_grid[hidx]]))
    m_code, h_code = codes[: m_ll.shape[0]], codes[m_ll.shape[0]:]
    proj = _Projector(hh_ll)
    offset = 1.0e7
    m_xy = proj(m_ll)
    h_xy = proj(hh_ll)
    m_xy[:, 0] += m_code * offset
    h_xy[:, 0] += h_code * offset
    _, j = cKDTree(m_xy).query(h_xy, k=1)
    d = haversine_m(hh_ll[:, 0], hh_ll[:, 1], m_ll[j, 0], m_ll[j, 1])
    member_id[hidx] = m_ids[j]
    dist[hidx] = d
    # capacity per grid: rank households by distance within their grid
    cap = np.bincount(m_code, minlength=len(uniq)) * max_links
    order = np.lexsort((d, h_code))
    sorted_code = h_code[order]
    start = np.searchsorted(sorted_code, sorted_code, side="left")
    rank = np.arange(order.shape[0]) - start
    full = order[rank >= cap[sorted_code]]
    reason[hidx[full]] = UNLINKED_FULL
    if max_link_distance_m is not None:
        far = pd.isna(reason) & (dist > max_link_distance_m)
        reason[far] = UNLINKED_TOO_FAR


# grid status -----------------------------------------------------------------------------------

def grid_status(grids: gpd.GeoDataFrame, households: gpd.GeoDataFrame, members: gpd.GeoDataFrame | None = None,
                links: pd.DataFrame | None = None, *, max_link_distance_m: float | None = None,
                max_links: int = MAX_LINKS, unlinked: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """Status of every grid: branch, members, households, links, size, and whether it is blank.

    Builds on :func:`gridmap.census.grid_counts` (``households``, ``members``, ``band_min``,
    ``band_max``, ``status``) and adds:

    * ``has_branch`` — bool (a grid layer without the column is taken to have branches);
    * ``linked_households``, ``unlinked_households`` and ``link_coverage_pct`` (0–100; NaN for a
      grid without households) — from ``links`` or estimated, see :func:`unlinked_households`;
    * ``members_needed`` — members to recruit so that every household can be linked at
      ``max_links`` per member: ``ceil(unlinked_households / max_links)`` (as the linkage engine
      reports it; without links this is ``max(0, ceil(households / max_links) − members)``);
    * ``size_status`` — ``over-size`` / ``under-size`` / ``ok`` against the band, whatever the branch;
    * ``blank`` and ``blank_reason`` — a 空白网格 has no branch (``no branch``), or households but
      no member (``no members``), or both (``no branch, no members``).

    ``unlinked`` may pass a precomputed :func:`unlinked_households` result to avoid recomputing it.
    Inputs are WGS84; ``households`` / ``members`` get ``grid_code`` by point-in-polygon where missing.
    """
    households = _with_grid_codes(households, grids)
    members = _with_grid_codes(members, grids)
    out = grid_counts(grids, households, members)
    if "has_branch" in out.columns:
        out["has_branch"] = out["has_branch"].fillna(True).astype(bool)
    else:
        out["has_branch"] = True
    if unlinked is None and links is None and max_link_distance_m is None:
        # the estimate without a distance limit depends only on counts: members × max_links per grid
        cap = out["members"].to_numpy() * max_links
        ul = pd.Series(out["households"].to_numpy() - np.minimum(out["households"].to_numpy(), cap),
                       index=out["grid_code"].to_numpy())
        ul = ul[~ul.index.duplicated()]
    elif unlinked is None:
        _, reason, _, _ = _link_state(households, members, links, max_link_distance_m, max_links)
        ul = households["grid_code"][~pd.isna(reason)].value_counts()
    else:
        ul = unlinked["grid_code"].value_counts() if len(unlinked) else pd.Series(dtype=int)
    out["unlinked_households"] = out["grid_code"].map(ul).fillna(0).astype(int)
    out["linked_households"] = out["households"] - out["unlinked_households"]
    hh = out["households"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["link_coverage_pct"] = np.where(hh > 0, 100.0 * out["linked_households"].to_numpy() / hh, np.nan)
    # The linkage engine's definition, so the plan shows one figure: members still needed to link
    # every unlinked household at max_links each. Without links the estimate above makes this
    # ceil(households / max_links) − members.
    out["members_needed"] = np.ceil(out["unlinked_households"].to_numpy() / max_links).astype(int)
    out["size_status"] = np.where(out["households"] > out["band_max"], STATUS_OVER,
                                  np.where(out["households"] < out["band_min"], STATUS_UNDER, STATUS_OK))
    no_branch = ~out["has_branch"].to_numpy()
    no_members = (out["households"].to_numpy() > 0) & (out["members"].to_numpy() == 0)
    out["blank"] = no_branch | no_members
    no_reason = np.full(len(out), None, dtype=object)
    out["blank_reason"] = np.where(no_branch & no_members, BLANK_BOTH,
                                   np.where(no_branch, BLANK_NO_BRANCH, np.where(no_members, BLANK_NO_MEMBERS, no_reason)))
    out["blank_reason"] = out["blank_reason"].astype(object).where(out["blank"], None)
    return out


def blank_grid_counts(status: pd.DataFrame) -> dict[str, int]:
    """Number of blank grids per reason (``no branch``, ``no members``, ``no branch, no members``)."""
    vc = status.loc[status["blank"], "blank_reason"].value_counts()
    return {r: int(vc.get(r, 0)) for r in (BLANK_NO_BRANCH, BLANK_NO_MEMBERS, BLANK_BOTH)}


# straight-line service circle ------------------------------------------------------------------

def straight_line_coverage(households: gpd.GeoDataFrame, centres: gpd.GeoDataFrame,
                           radius_m: float | None = None, *, k: int = 3) -> pd.DataFrame:
    """Which households lie within the straight-line service circle of some centre.

    Parameters
    ----------
    households, centres : WGS84 points; ``centres`` may carry a per-centre ``radius_m`` (metres).
    radius_m : radius for centres without their own (default 1,000 m, seed 002).
    k : nearest centres (in UTM) examined per household before falling back to a full check.

    Returns
    -------
    DataFrame indexed like ``households`` with ``nearest_centre`` (``centre_id``, categorical),
    ``nearest_centre_m`` (haversine metres to the nearest centre) and ``covered`` (bool: the
    haversine distance to at least one centre is ≤ that centre's radius).

    Notes
    -----
    A KD-tree in UTM (metres) gives each household its ``k`` nearest centres; the decision uses
    their haversine distances. A household not covered by those whose ``k``-th candidate still lies
    within the largest radius (plus a 1 % + 1 m margin, above the < 0.5 % by which UTM and
    haversine distances can differ), or whose candidates are nearly tied, is checked against
    every centre in that margin. The answer is therefore the same as a brute-force haversine count.
    """
    n = len(households)
    hh_ll = _lonlat(households)
    c_ll = _lonlat(centres)
    if n == 0 or len(centres) == 0:
        return pd.DataFrame({"nearest_centre": np.full(n, None, dtype=object), "nearest_centre_m": np.full(n, np.nan),
                             "covered": np.zeros(n, dtype=bool)}, index=households.index)
    proj = _Projector(hh_ll)
    hh_xy = proj(hh_ll)
    c_xy = proj(c_ll)
    ids = centres["centre_id"].to_numpy(dtype=object)
    radii = _radii(centres, radius_m)
    reach = float(radii.max()) * (1 + _PRESELECT_SLACK) + 1.0
    tree = cKDTree(c_xy)
    kk = min(k, len(centres))
    dd, j = tree.query(hh_xy, k=kk)
    dd = dd.reshape(n, kk)
    j = j.reshape(n, kk)
    hv = haversine_m(hh_ll[:, 0:1], hh_ll[:, 1:2], c_ll[j, 0], c_ll[j, 1])  # (n, 1) against (n, k): metres
    best = np.argmin(hv, axis=1)
    rows = np.arange(n)
    nearest = j[rows, best]
    nearest_m = hv[rows, best]
    covered = (hv <= radii[j]).any(axis=1)
    # More centres may matter than the k examined: for coverage, when the k-th still lies within
    # the largest radius; for the nearest, when the k-th is within the slack of the first.
    if kk < len(centres):
        near_tie = dd[:, -1] <= dd[:, 0] * (1 + 2 * _PRESELECT_SLACK) + 2.0
        unsure = np.flatnonzero((~covered & (dd[:, -1] <= reach)) | near_tie)
    else:
        unsure = np.zeros(0, np.int64)
    if unsure.shape[0]:
        radius = np.maximum(reach, dd[unsure, 0] * (1 + 2 * _PRESELECT_SLACK) + 2.0)
        lists = tree.query_ball_point(hh_xy[unsure], radius)
        for t, near in zip(unsure, lists):
            near = np.asarray(near, dtype=np.int64)
            d = haversine_m(hh_ll[t, 0], hh_ll[t, 1], c_ll[near, 0], c_ll[near, 1])
            if (d <= radii[near]).any():
                covered[t] = True
            i = int(np.argmin(d))
            if d[i] < nearest_m[t]:
                nearest[t], nearest_m[t] = near[i], d[i]
    # a categorical keeps a million ids cheap (no per-row string objects)
    cats = pd.Index(ids).astype(str)
    nc = pd.Categorical.from_codes(nearest, categories=cats) if cats.is_unique else ids[nearest]
    return pd.DataFrame({"nearest_centre": nc, "nearest_centre_m": nearest_m, "covered": covered},
                        index=households.index)


def straight_line_areas(centres: gpd.GeoDataFrame, radius_m: float | None = None,
                        quad_segs: int = 32) -> gpd.GeoDataFrame:
    """Service circles as WGS84 polygons (``centre_id``, ``basis``="straight", ``radius_m``).

    Each circle is buffered in the centre's UTM zone (metres) and brought back to WGS84.
    """
    radii = _radii(centres, radius_m)
    ll = _lonlat(centres)
    proj = _Projector(ll)
    xy = proj(ll)
    circles = shapely.buffer(shapely.points(xy), radii, quad_segs=quad_segs)
    geo = gpd.GeoSeries(circles, crs=proj.crs).to_crs(WGS84)
    return gpd.GeoDataFrame({"centre_id": centres["centre_id"].to_numpy(), "basis": "straight", "radius_m": radii},
                            geometry=geo.values, crs=WGS84)


# walking service circle ------------------------------------------------------------------------

def walking_coverage(households: gpd.GeoDataFrame, centres: gpd.GeoDataFrame, network, limit_m: float,
                     **kw) -> pd.DataFrame:
    """Walking distance (metres, along ``network``) from the nearest centre, and ``covered_walk``.

    ``network`` is a :class:`gridmap.walknet.WalkNetwork`; ``limit_m`` the walking budget (default
    policy 15 min × 80 m/min = 1,200 m). Households beyond the budget get ``walk_m`` = NaN.
    Returns a DataFrame indexed like ``households`` with ``walk_m`` and ``covered_walk``.
    """
    n = len(households)
    if n == 0 or len(centres) == 0:
        return pd.DataFrame({"walk_m": np.full(n, np.nan), "covered_walk": np.zeros(n, bool)}, index=households.index)
    d = network.point_distances(network.points_xy(centres), network.points_xy(households), limit_m,
                                min_only=True, **kw)
    ok = np.isfinite(d)
    return pd.DataFrame({"walk_m": np.where(ok, d, np.nan), "covered_walk": ok}, index=households.index)


def walking_areas(centres: gpd.GeoDataFrame, network, limit_m: float, res: int = 11, **kw) -> gpd.GeoDataFrame:
    """Area reachable on foot from each centre (WGS84 polygons of H3 cells, see ``WalkNetwork.service_area``).

    Columns ``centre_id``, ``basis``="walking", ``radius_m`` (= ``limit_m``) and geometry.
    """
    xy = network.points_xy(centres)
    geoms = []
    chunk = 32
    for start in range(0, len(centres), chunk):
        nd, _ = network.node_distances(xy[start:start + chunk], limit_m, **kw)
        for i in range(nd.shape[0]):
            geoms.append(network.service_area(xy[start + i], limit_m, res, node_dist=nd[i], **kw))
    return gpd.GeoDataFrame({"centre_id": centres["centre_id"].to_numpy(), "basis": "walking",
                             "radius_m": float(limit_m)}, geometry=geoms, crs=WGS84)


# gap cells -------------------------------------------------------------------------------------

def gap_cells(households: gpd.GeoDataFrame, uncovered, res: int = 9, basis: str = "straight") -> gpd.GeoDataFrame:
    """Uncovered households merged into H3 cells and connected gap areas (服务盲区).

    Parameters
    ----------
    households : WGS84 points.
    uncovered : bool mask (array or Series aligned with ``households``) of households outside
        every service circle.
    res : H3 resolution of the cells (9: ~0.1 km², edge ~174 m; 10: ~0.015 km², edge ~66 m).
    basis : label stored in the ``basis`` column (``straight`` / ``walking``).

    Returns
    -------
    GeoDataFrame, one row per H3 cell holding uncovered households: ``h3`` (int64), ``households``
    (count in the cell), ``gap_id`` (cells sharing an edge form one gap area, numbered by size,
    largest first from 1), ``gap_households`` (total of the gap area), ``basis``; WGS84 polygons.
    """
    mask = np.asarray(uncovered, dtype=bool)
    ll = _lonlat(households)[mask]
    cols = {"h3": np.zeros(0, np.int64), "households": np.zeros(0, int), "gap_id": np.zeros(0, int),
            "gap_households": np.zeros(0, int), "basis": np.zeros(0, object)}
    if ll.shape[0] == 0:
        return gpd.GeoDataFrame(cols, geometry=[], crs=WGS84)
    cells = points_to_cells(ll[:, 0], ll[:, 1], res)
    uniq, counts = np.unique(cells, return_counts=True)
    gap_of_cell, gap_households = number_gap_areas(uniq, counts)
    geoms = [cell_polygon(c) for c in uniq]
    out = gpd.GeoDataFrame({"h3": to_signed(uniq), "households": counts.astype(int), "gap_id": gap_of_cell,
                            "gap_households": gap_households, "basis": basis}, geometry=geoms, crs=WGS84)
    return out.sort_values(["gap_id", "households"], ascending=[True, False], kind="stable").reset_index(drop=True)


def unlinked_cells(unlinked: gpd.GeoDataFrame, res: int = 9) -> gpd.GeoDataFrame:
    """Unlinked households (:func:`unlinked_households` rows) counted per H3 cell and reason.

    Returns one WGS84 polygon per H3 cell (resolution ``res``) with ``h3`` (int64),
    ``households`` and one count column per reason — the privacy-friendly way to show where
    households lack a member without placing any one of them.
    """
    if len(unlinked) == 0:
        return gpd.GeoDataFrame({"h3": np.zeros(0, np.int64), "households": np.zeros(0, int)}, geometry=[], crs=WGS84)
    # H3 children do not nest exactly in their parent, so each point is indexed at ``res`` itself
    ll = _lonlat(unlinked)
    cells = points_to_cells(ll[:, 0], ll[:, 1], res)
    df = pd.DataFrame({"h3": to_signed(cells), "reason": unlinked["reason"].astype(str).to_numpy()})
    counts = df.groupby(["h3", "reason"]).size().unstack(fill_value=0)
    counts.columns = [str(c) for c in counts.columns]
    counts.insert(0, "households", counts.sum(axis=1))
    counts = counts.reset_index()
    geoms = [cell_polygon(int(c)) for c in to_unsigned(counts["h3"].to_numpy())]
    return gpd.GeoDataFrame(counts, geometry=geoms, crs=WGS84)


def gap_areas(cells: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Dissolve :func:`gap_cells` into one polygon per ``gap_id`` with ``households`` and ``cells`` counts."""
    if len(cells) == 0:
        return gpd.GeoDataFrame({"gap_id": [], "households": [], "cells": []}, geometry=[], crs=WGS84)
    g = cells.dissolve("gap_id", aggfunc={"households": "sum", "h3": "count", "basis": "first"}, as_index=False)
    return g.rename(columns={"h3": "cells"})


def number_gap_areas(cells: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gap areas of sorted unique H3 cells (uint64) holding ``counts`` households: each cell's area
    number (1 = most households; ties by lowest cell index) and its area's household total."""
    label = _cell_components(cells)
    comp_total = np.bincount(label, weights=counts).astype(int)
    first_cell = np.full(comp_total.shape[0], np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(first_cell, label, cells)
    rank = np.lexsort((first_cell, -comp_total))
    gap_id = np.empty_like(rank)
    gap_id[rank] = np.arange(1, rank.shape[0] + 1)
    return gap_id[label], comp_total[label]


def _cell_components(cells: np.ndarray) -> np.ndarray:
    """Connected-component label of each H3 cell (uint64, sorted) under edge adjacency."""
    pos = {int(c): i for i, c in enumerate(cells)}
    rows, cols = [], []
    for i, c in enumerate(cells):
        for nb in h3.grid_ring(h3.int_to_str(int(c)), 1):
            j = pos.get(h3.str_to_int(nb))
            if j is not None:
                rows.append(i)
                cols.append(j)
    n = cells.shape[0]
    adj = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, label = connected_components(adj, directed=False)
    return label


# roll-ups --------------------------------------------------------------------------------------

def rollup(status: pd.DataFrame, by: str) -> pd.DataFrame:
    """Coverage figures per community or street from :func:`grid_status` rows.

    ``by`` names a column of ``status`` (e.g. ``community_code`` or ``street_code``). Returns one row
    per value with ``grids``, ``blank_grids``, ``households``, ``members``, ``linked_households``,
    ``link_coverage_pct`` and ``members_needed``; rows with households in the circle figures
    (``covered_straight`` / ``covered_walk``) are summed too when present.
    """
    cols = {"grid_code": "count", "blank": "sum", "households": "sum", "members": "sum",
            "linked_households": "sum", "members_needed": "sum"}
    for extra in ("covered_straight", "covered_walk"):
        if extra in status.columns:
            cols[extra] = "sum"
    g = pd.DataFrame(status).groupby(by, dropna=False).agg(cols).rename(columns={"grid_code": "grids",
                                                                                "blank": "blank_grids"})
    hh = g["households"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        g["link_coverage_pct"] = np.where(hh > 0, 100.0 * g["linked_households"].to_numpy() / hh, np.nan)
    g["blank_grids"] = g["blank_grids"].astype(int)
    return g.reset_index()


def coverage_summary(status: pd.DataFrame, straight: pd.DataFrame | None = None,
                     walk: pd.DataFrame | None = None) -> dict:
    """Headline figures: blank grids by reason, % households linked, % within the circle (straight/walking)."""
    hh = int(status["households"].sum())
    linked = int(status["linked_households"].sum())
    out = {
        "grids": len(status),
        "blank_grids": int(status["blank"].sum()),
        "blank_by_reason": blank_grid_counts(status),
        "households": hh,
        "linked_households": linked,
        "linked_pct": round(100.0 * linked / hh, 2) if hh else None,
        "members_needed": int(status["members_needed"].sum()),
    }
    if straight is not None and len(straight):
        out["within_straight_pct"] = round(100.0 * float(straight["covered"].mean()), 2)
    if walk is not None and len(walk):
        out["within_walk_pct"] = round(100.0 * float(walk["covered_walk"].mean()), 2)
    return out



# everything at once ----------------------------------------------------------------------------

# More than ten arguments on purpose: the layers and the policy options of `gridmap gaps`, by keyword.
def coverage_gaps(grids: gpd.GeoDataFrame, households: gpd.GeoDataFrame, members: gpd.GeoDataFrame | None = None,  # noqa: PLR0913
                  links: pd.DataFrame | None = None, centres: gpd.GeoDataFrame | None = None, *,
                  radius_m: float | None = None, roads: gpd.GeoDataFrame | None = None,
                  walk_limit_m: float | None = None, max_link_distance_m: float | None = None,
                  gap_res: int = 9, area_res: int = 11) -> tuple[dict[str, gpd.GeoDataFrame], dict]:
    """The four gap layers and the headline figures, as ``gridmap gaps`` and ``gridmap plan`` write them.

    Returns ``(layers, summary)``. ``layers``: ``grid_status`` (grid polygons with the columns of
    :func:`grid_status` plus ``covered_straight`` / ``covered_walk`` household counts),
    ``unlinked_households`` (points), ``service_areas`` (straight circles and, with ``roads``,
    walking areas) and ``gap_cells`` (H3 ``gap_res`` cells of households outside every circle —
    walking when ``roads`` is given, else straight). ``summary``: see :func:`coverage_summary`,
    plus the walking network size. Inputs WGS84; ``radius_m`` default 1,000 m, ``walk_limit_m``
    default 1,200 m (15 min × 80 m/min).
    """
    from gridmap.contract import WALK_MINUTES, WALK_SPEED_M_PER_MIN

    households = _with_grid_codes(households, grids)
    members = _with_grid_codes(members, grids)
    unlinked = unlinked_households(households, members, links, max_link_distance_m=max_link_distance_m)
    status = grid_status(grids, households, members, links, max_link_distance_m=max_link_distance_m,
                         unlinked=unlinked)
    layers: dict[str, gpd.GeoDataFrame] = {"unlinked_households": unlinked}
    straight = walk = None
    areas = []
    basis, uncovered = "straight", None  # basis is read only once uncovered is set
    if centres is not None and len(centres):
        straight = straight_line_coverage(households, centres, radius_m)
        cs = pd.Series(straight["covered"].to_numpy()).groupby(households["grid_code"].to_numpy()).sum()
        status["covered_straight"] = status["grid_code"].map(cs).fillna(0).astype(int)
        areas.append(straight_line_areas(centres, radius_m))
        basis, uncovered = "straight", ~straight["covered"].to_numpy()
        if roads is not None and len(roads):
            from gridmap.walknet import build_walk_network

            limit = walk_limit_m if walk_limit_m is not None else WALK_MINUTES * WALK_SPEED_M_PER_MIN
            net = build_walk_network(roads)
            walk = walking_coverage(households, centres, net, limit)
            cw = pd.Series(walk["covered_walk"].to_numpy()).groupby(households["grid_code"].to_numpy()).sum()
            status["covered_walk"] = status["grid_code"].map(cw).fillna(0).astype(int)
            areas.append(walking_areas(centres, net, limit, res=area_res))
            basis, uncovered = "walking", ~walk["covered_walk"].to_numpy()
    layers["grid_status"] = status
    layers["service_areas"] = (gpd.GeoDataFrame(pd.concat(areas, ignore_index=True), crs=WGS84) if areas else
                               gpd.GeoDataFrame({"centre_id": [], "basis": [], "radius_m": []}, geometry=[], crs=WGS84))
    if uncovered is not None:
        layers["gap_cells"] = gap_cells(households, uncovered, res=gap_res, basis=basis)
    else:
        layers["gap_cells"] = gap_cells(households, np.zeros(len(households), bool), res=gap_res)
    summary = coverage_summary(status, straight, walk)
    summary["unlinked_by_reason"] = {str(k): int(v) for k, v in unlinked["reason"].value_counts().items()}
    summary["gap_cells"] = len(layers["gap_cells"])
    summary["gap_areas"] = int(layers["gap_cells"]["gap_id"].nunique()) if len(layers["gap_cells"]) else 0
    summary["gap_basis"] = basis
    summary["households_outside_circle"] = int(uncovered.sum()) if uncovered is not None else None
    return layers, summary
