"""The linkage report (包片联户): links with visiting order, unlinked households, members, grids, summary.

Positions are planar metres (the UTM CRS chosen by :func:`gridmap.linkage.link_households`);
distances in the tables are metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from gridmap.contract import (
    UNLINKED_FULL,
    UNLINKED_NO_GRID,
    UNLINKED_NO_MEMBER,
    UNLINKED_TOO_FAR,
)
from gridmap.linkage.problem import DistanceFn, Solution
from gridmap.visit_order import order_visits

#: Reasons a household is left unlinked (most fundamental first): the contract's codes.
REASON_NO_GRID = UNLINKED_NO_GRID
REASON_NO_MEMBER = UNLINKED_NO_MEMBER
REASON_BEYOND = UNLINKED_TOO_FAR
REASON_ALL_FULL = UNLINKED_FULL
REASONS = (REASON_NO_GRID, REASON_NO_MEMBER, REASON_BEYOND, REASON_ALL_FULL)

#: Member statuses.
STATUS_IN_BAND = "in band"
STATUS_BELOW_MIN = "below minimum"
STATUS_UNAVAILABLE = "unavailable"

#: Why a member is below the minimum.
SHORT_FEW_REACHABLE = "too few reachable households"
SHORT_SHARED = "households needed by other members"


@dataclass
class LinkResult:
    """Outcome of :func:`gridmap.linkage.link_households`.

    Attributes
    ----------
    links : DataFrame
        One row per linked household: ``household_id``, ``member_id``, ``distance_m`` (metres),
        ``visit_order`` (1 = first stop on the member's route), ``grid_code`` (household's),
        ``member_grid_code``, ``cross_grid`` and ``kept`` (the link existed in ``previous``).
    unlinked : DataFrame
        ``household_id``, ``grid_code``, ``reason`` (one of the contract's ``UNLINKED_*`` codes),
        ``special`` (a special-group household, ``gridmap.contract.SPECIAL_TAGS``).
    members : DataFrame
        ``member_id``, ``grid_code``, ``load``, ``min_links``, ``max_links``, ``reachable``
        (households within reach), ``status`` and ``shortfall_reason`` (for ``below minimum``).
    grids : DataFrame
        Per grid: ``households``, ``linked``, ``unlinked``, ``members``, ``capacity`` (sum of the
        members' ``max_links``), ``members_needed`` = ``ceil(unlinked / max_links)`` and
        ``nearest_outside`` — members of other grids with spare capacity nearest to the grid's
        unlinked households, as a list of dicts ``member_id, grid_code, distance_m, spare``.
    summary : dict
        Headline figures (counts, percentages, total distance in metres, changes, solver stats).
    """

    links: pd.DataFrame
    unlinked: pd.DataFrame
    members: pd.DataFrame
    grids: pd.DataFrame
    summary: dict = field(default_factory=dict)


@dataclass
class LinkInputs:
    """The prepared inputs of one linkage run, as the report needs them (positions in metres)."""

    household_ids: np.ndarray
    member_ids: np.ndarray
    h_code: np.ndarray  # grid code strings, None for none
    m_code: np.ndarray
    h_grid: np.ndarray  # grid index, -1 for none
    m_grid: np.ndarray
    h_xy: np.ndarray
    m_xy: np.ndarray
    m_min: np.ndarray
    m_max: np.ndarray
    prev: np.ndarray  # previous member index, -1 for none
    grid_codes: list[str]
    default_max: int
    distance_fn: DistanceFn | None = None
    nearest_outside: int = 5
    had_previous: bool = False
    special: np.ndarray | None = None  # special-group households (bool), None for none


def _link_distances(inp: LinkInputs, li: np.ndarray, mi: np.ndarray) -> np.ndarray:
    """Metres of every link, by the same distance the solver used."""
    if inp.distance_fn is None:
        return np.linalg.norm(inp.h_xy[li] - inp.m_xy[mi], axis=1) if len(li) else np.zeros(0)
    return np.array([float(inp.distance_fn(inp.h_xy[i:i + 1], inp.m_xy[j:j + 1])[0, 0]) for i, j in zip(li, mi)])


def links_table(inp: LinkInputs, member_of: np.ndarray, dist: np.ndarray) -> pd.DataFrame:
    """One row per link, sorted by member and visiting order."""
    li = np.flatnonzero(member_of >= 0)
    mi = member_of[li]
    order = order_visits(member_of, inp.h_xy, inp.m_xy)
    links = pd.DataFrame({
        "household_id": inp.household_ids[li], "member_id": inp.member_ids[mi], "distance_m": dist,
        "visit_order": order[li], "grid_code": inp.h_code[li], "member_grid_code": inp.m_code[mi],
        "cross_grid": inp.h_grid[li] != inp.m_grid[mi], "kept": inp.prev[li] == mi,
    })
    return links.sort_values(["member_id", "visit_order"], kind="stable").reset_index(drop=True)


def unlinked_reasons(inp: LinkInputs, sol: Solution, un: np.ndarray) -> np.ndarray:
    """The most fundamental reason each unlinked household (rows ``un``) has no member."""
    return np.where(inp.h_grid[un] < 0, REASON_NO_GRID,
                    np.where(~sol.has_member[un], REASON_NO_MEMBER,
                             np.where(~sol.has_within[un], REASON_BEYOND, REASON_ALL_FULL)))


def members_table(inp: LinkInputs, sol: Solution, load: np.ndarray) -> pd.DataFrame:
    """Per member: load, band, households within reach, status and why it is below its minimum."""
    available = inp.m_max > 0
    below = available & (load < inp.m_min)
    status = np.where(~available, STATUS_UNAVAILABLE, np.where(below, STATUS_BELOW_MIN, STATUS_IN_BAND))
    short_reason = np.where(below, np.where(sol.reachable < inp.m_min, SHORT_FEW_REACHABLE, SHORT_SHARED), "")
    return pd.DataFrame({"member_id": inp.member_ids, "grid_code": inp.m_code, "load": load,
                         "min_links": inp.m_min, "max_links": inp.m_max, "reachable": sol.reachable,
                         "status": status, "shortfall_reason": short_reason})


def _nearest_outside(inp: LinkInputs, un: np.ndarray, unlinked_per_grid: np.ndarray, spare: np.ndarray) -> list:
    """Per grid: members of other grids with spare capacity nearest its unlinked households' centre."""
    outside: list[list[dict]] = [[] for _ in inp.grid_codes]
    spare_idx = np.flatnonzero(spare > 0)
    if not len(spare_idx):
        return outside
    tree = cKDTree(inp.m_xy[spare_idx])
    for g in np.flatnonzero(unlinked_per_grid > 0):
        centre = inp.h_xy[un[inp.h_grid[un] == g]].mean(axis=0)
        # Ask for enough neighbours to skip the grid's own members and still have n_outside.
        k = min(len(spare_idx), int(inp.nearest_outside) + int((inp.m_grid[spare_idx] == g).sum()))
        dists, found = tree.query(centre, k=k)
        for d, j in zip(np.atleast_1d(dists), np.atleast_1d(found)):
            mem = spare_idx[j]
            if inp.m_grid[mem] == g:
                continue
            outside[g].append({"member_id": inp.member_ids[mem], "grid_code": inp.m_code[mem],
                               "distance_m": round(float(d), 1), "spare": int(spare[mem])})
            if len(outside[g]) >= inp.nearest_outside:
                break
    return outside


def grids_table(inp: LinkInputs, linked: np.ndarray, un: np.ndarray, load: np.ndarray) -> pd.DataFrame:
    """Per grid: households, linked, unlinked, members, capacity, members needed, nearest outside."""
    n_grids = len(inp.grid_codes)
    in_grid = inp.h_grid >= 0
    m_in_grid = inp.m_grid >= 0
    households = np.bincount(inp.h_grid[in_grid], minlength=n_grids)
    linked_g = np.bincount(inp.h_grid[in_grid & linked], minlength=n_grids)
    unlinked_g = households - linked_g
    spare = np.maximum(inp.m_max - load, 0)
    return pd.DataFrame({
        "grid_code": inp.grid_codes, "households": households, "linked": linked_g, "unlinked": unlinked_g,
        "members": np.bincount(inp.m_grid[m_in_grid & (inp.m_max > 0)], minlength=n_grids),
        "capacity": np.bincount(inp.m_grid[m_in_grid], weights=inp.m_max[m_in_grid],
                                minlength=n_grids).astype(np.int64),
        "members_needed": -(-unlinked_g // max(1, int(inp.default_max))),
        "nearest_outside": _nearest_outside(inp, un, unlinked_g, spare),
    })


def _changes(prev: np.ndarray, member_of: np.ndarray) -> dict:
    """Links kept, reassigned, dropped and added against the previous run."""
    had, linked = prev >= 0, member_of >= 0
    return {"kept": int((had & (member_of == prev)).sum()),
            "reassigned": int((had & linked & (member_of != prev)).sum()),
            "dropped": int((had & ~linked).sum()),
            "added": int((~had & linked).sum())}


def _special(inp: LinkInputs) -> np.ndarray:
    """Special-group flag of every household (all false when none were given)."""
    return np.zeros(len(inp.household_ids), dtype=bool) if inp.special is None else inp.special


def summarise(inp: LinkInputs, sol: Solution, tables: LinkResult, reason: np.ndarray, dist: np.ndarray) -> dict:
    """Headline figures of a run (distances in metres)."""
    n_h, n_linked = len(inp.household_ids), len(tables.links)
    status = tables.members["status"].to_numpy()
    load = tables.members["load"].to_numpy()
    available = inp.m_max > 0
    special = _special(inp)
    summary: dict[str, Any] = {
        "households": int(n_h), "linked": int(n_linked), "unlinked": int(n_h - n_linked),
        "linked_pct": round(100.0 * n_linked / n_h, 2) if n_h else 100.0,
        "unlinked_by_reason": {r: int((reason == r).sum()) for r in REASONS if (reason == r).any()},
        "members": len(inp.member_ids), "members_available": int(available.sum()),
        "members_in_band": int((status == STATUS_IN_BAND).sum()),
        "members_below_min": int((status == STATUS_BELOW_MIN).sum()),
        "members_idle": int((available & (load == 0)).sum()),
        "total_distance_m": round(float(dist.sum()), 1),
        "mean_distance_m": round(float(dist.mean()), 1) if len(dist) else 0.0,
        "cross_grid_links": int(tables.links["cross_grid"].sum()),
        "grids_short": int((tables.grids["unlinked"] > 0).sum()),
        "members_needed": int(tables.grids["members_needed"].sum()),
        "special_households": int(special.sum()),
        "special_linked": int((special & (sol.member_of >= 0)).sum()),
        "special_unlinked": int((special & (sol.member_of < 0)).sum()),
        "solver": dict(sol.stats),
    }
    if inp.had_previous:
        summary["changes"] = _changes(inp.prev, sol.member_of)
        summary["links_changed"] = int(sum(v for k, v in summary["changes"].items() if k != "kept"))
    return summary


def build_report(inp: LinkInputs, sol: Solution) -> LinkResult:
    """The full :class:`LinkResult` of a solved run."""
    member_of = sol.member_of
    linked = member_of >= 0
    li, un = np.flatnonzero(linked), np.flatnonzero(~linked)
    dist = _link_distances(inp, li, member_of[li])
    reason = unlinked_reasons(inp, sol, un)
    load = np.bincount(member_of[li], minlength=len(inp.member_ids))
    result = LinkResult(
        links=links_table(inp, member_of, dist),
        unlinked=pd.DataFrame({"household_id": inp.household_ids[un], "grid_code": inp.h_code[un],
                               "reason": reason, "special": _special(inp)[un]}),
        members=members_table(inp, sol, load),
        grids=grids_table(inp, linked, un, load),
    )
    result.summary = summarise(inp, sol, result, reason, dist)
    return result
