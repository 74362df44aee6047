"""The GeoDataFrame face of the engine: :func:`link_households` (包片联户).

Points come in WGS84 (EPSG:4326) and are projected to a metric CRS (UTM by default) for distances
in metres.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from gridmap.contract import MAX_LINKS, MIN_LINKS, SPECIAL_TAGS, parse_bool
from gridmap.linkage.adjacency import grid_adjacency
from gridmap.linkage.problem import DistanceFn
from gridmap.linkage.report import LinkInputs, LinkResult, build_report
from gridmap.linkage.solve import solve_arrays
from gridmap.metric import metric_crs, point_xy


def _codes(series) -> np.ndarray:
    """Grid codes as stripped strings, with missing or blank values as None."""
    blank = series.isna().to_numpy() | (series.astype(str).str.strip() == "").to_numpy()
    out = series.astype(str).str.strip().to_numpy(dtype=object)
    out[blank] = None
    return out


def _int_column(df, name, default) -> np.ndarray:
    """An optional integer column (``min_links`` / ``max_links``), ``default`` where missing."""
    if name not in df.columns:
        return np.full(len(df), default, dtype=np.int64)
    vals = pd.to_numeric(df[name], errors="coerce")
    return vals.fillna(default).round().astype(np.int64).to_numpy()


def member_availability(members) -> np.ndarray:
    """``available`` of every member as bools, in the contract's yes/no words; missing = available.

    Raises
    ------
    ValueError
        Naming the member row (1-based) and the word when a cell is not yes/no.
    """
    if "available" not in members.columns:
        return np.ones(len(members), dtype=bool)
    out = np.empty(len(members), dtype=bool)
    for row, value in enumerate(members["available"].tolist()):
        try:
            out[row] = parse_bool(value, default=True)
        except ValueError as err:
            raise ValueError(f"members row {row + 1}, column available: {err}") from None
    return out


def _tag_list(cell) -> list[str]:
    """A ``tags`` cell as stripped strings: a list (the store, GeoParquet) or comma-joined text (files)."""
    if cell is None or (isinstance(cell, float) and cell != cell):
        return []
    items = list(cell) if isinstance(cell, (list, tuple, set, np.ndarray)) else str(cell).replace("，", ",").split(",")
    return [str(t).strip() for t in items if str(t).strip()]


def special_households(households) -> np.ndarray:
    """Whether each household carries a special-group tag (``gridmap.contract.SPECIAL_TAGS``); no column = none."""
    if "tags" not in households.columns:
        return np.zeros(len(households), dtype=bool)
    special = frozenset(SPECIAL_TAGS)
    return np.array([not special.isdisjoint(_tag_list(cell)) for cell in households["tags"].tolist()], dtype=bool)


def _member_bands(members, min_links: int, max_links: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-member ``(min, max)`` households; an unavailable member gets ``(0, 0)``."""
    m_min = _int_column(members, "min_links", min_links)
    m_max = _int_column(members, "max_links", max_links)
    available = member_availability(members)
    m_max = np.where(available, m_max, 0)
    return np.minimum(np.where(available, m_min, 0), m_max), m_max


def _grid_codes(hh, mm, grids):
    """Grid code per household and member, the sorted list of all codes, and indices into it (-1 = none)."""
    if "grid_code" not in hh.columns and "grid_code" not in mm.columns:
        h_code, m_code = np.full(len(hh), "", dtype=object), np.full(len(mm), "", dtype=object)
    else:
        h_code = _codes(hh["grid_code"]) if "grid_code" in hh.columns else np.full(len(hh), None, dtype=object)
        m_code = _codes(mm["grid_code"]) if "grid_code" in mm.columns else np.full(len(mm), None, dtype=object)
    listed = {str(c) for c in grids["grid_code"]} if grids is not None and len(grids) else set()
    all_codes = sorted({c for c in h_code if c is not None} | {c for c in m_code if c is not None} | listed)
    code_idx = {c: i for i, c in enumerate(all_codes)}
    h_grid = np.array([code_idx[c] if c is not None else -1 for c in h_code], dtype=np.int64)
    m_grid = np.array([code_idx[c] if c is not None else -1 for c in m_code], dtype=np.int64)
    return h_code, m_code, all_codes, h_grid, m_grid


def _borrow_matrix(all_codes, h_grid, m_grid, m_max, adjacency) -> np.ndarray:
    """``borrow[a, b]``: grid ``a`` is short (capacity below households) and neighbour ``b`` has spare."""
    n_grids = len(all_codes)
    code_idx = {c: i for i, c in enumerate(all_codes)}
    borrow = np.zeros((n_grids, n_grids), dtype=bool)
    h_count = np.bincount(h_grid[h_grid >= 0], minlength=n_grids)
    cap = np.bincount(m_grid[m_grid >= 0], weights=m_max[m_grid >= 0], minlength=n_grids).astype(np.int64)
    short, spare = h_count > cap, cap > h_count
    for a, neighbours in adjacency.items():
        ia = code_idx.get(str(a))
        if ia is None or not short[ia]:
            continue
        for b in neighbours:
            ib = code_idx.get(str(b))
            if ib is not None and ib != ia and spare[ib]:
                borrow[ia, ib] = True
    return borrow


def _previous_members(hh, mm, previous) -> np.ndarray:
    """Previous member index (row of ``mm``) of every household, -1 for none (last row of a household wins)."""
    if previous is None or not len(previous):
        return np.full(len(hh), -1, dtype=np.int64)
    m_pos = pd.Series(np.arange(len(mm)), index=mm["member_id"].astype(str))
    m_pos = m_pos[~m_pos.index.duplicated()]
    p = previous.dropna(subset=["household_id", "member_id"])
    p = pd.Series(p["member_id"].astype(str).to_numpy(), index=p["household_id"].astype(str).to_numpy())
    p = p[~p.index.duplicated(keep="last")]
    return hh["household_id"].astype(str).map(p).map(m_pos).fillna(-1).astype(np.int64).to_numpy()


# More than ten arguments on purpose: the layers and options of `gridmap link`, by keyword.
def link_households(households, members, *, min_links: int = MIN_LINKS, max_links: int = MAX_LINKS,  # noqa: PLR0913
                    max_distance_m: float | None = None, allow_cross_grid: bool = False, grids=None,
                    adjacency: Mapping[str, set[str]] | None = None, previous: pd.DataFrame | None = None,
                    keep_bonus_m: float = 200.0, distance_fn: DistanceFn | None = None,
                    candidates: int = 12, crs: str | None = None, nearest_outside: int = 5,
                    n_jobs: int = 1) -> LinkResult:
    """Link every household to one party member, optimally (包片联户).

    Parameters
    ----------
    households : GeoDataFrame
        ``household_id`` and points in WGS84 (EPSG:4326); ``grid_code`` optional; ``tags`` optional
        (lists or comma-joined text): a household tagged with one of ``gridmap.contract.SPECIAL_TAGS``
        (独居老人, 残疾人, 低保 …) is never left unlinked while an ordinary household is linked to a
        member who could serve it instead.
    members : GeoDataFrame
        ``member_id`` and home/post points in WGS84; optional ``grid_code``, ``min_links``,
        ``max_links`` (per-member overrides of the defaults) and ``available`` (the contract's
        yes/no words, e.g. 在岗/不在岗; false = not linked, empty = available).
    min_links, max_links : int
        Default band per member (policy: 5–10).
    max_distance_m : float, optional
        Longest allowed link, metres.
    allow_cross_grid : bool
        Let households of a *short* grid (members' total ``max_links`` below its households) link
        to members of a *neighbouring* grid that has capacity to spare (total ``max_links`` above
        its households). Neighbours come from ``adjacency`` or are computed from ``grids``.
    grids : GeoDataFrame, optional
        Grid polygons (WGS84): fill missing ``grid_code`` of points by location, supply the
        adjacency for ``allow_cross_grid`` and list grids without households in the report.
    adjacency : mapping, optional
        ``grid_code -> neighbouring grid_codes`` (overrides the one computed from ``grids``).
    previous : DataFrame, optional
        Previous links (``household_id``, ``member_id``) for stability.
    keep_bonus_m : float
        Metres credited to every previous link that is kept: a link changes only if that
        shortens the total distance by more than this (default 200 m).
    distance_fn : callable, optional
        ``distance_fn(h_xy, m_xy) -> (rows, cols)`` metres between UTM points, e.g. along roads;
        straight-line UTM distance by default.
    candidates : int
        Arcs per household in the first pruned solve (speed only; the result is exact).
    crs : str, optional
        Metric CRS for distances; the UTM zone of the households by default.
    nearest_outside : int
        At most this many outside members listed per short grid.
    n_jobs : int
        Worker processes for the independent blocks (same result for any value).

    Returns
    -------
    LinkResult
        Links with distances (m) and visiting order, unlinked households with reasons, member
        loads and statuses, per-grid shortages and a summary. Optimality: see the package docstring.

    Raises
    ------
    ValueError
        An ``available`` cell that is not yes/no (naming the row), a member band with
        ``min_links > max_links``, or ``allow_cross_grid`` without grids or adjacency.
    """
    from gridmap.census import assign_grid_codes

    hh, mm = households.reset_index(drop=True), members.reset_index(drop=True)
    if grids is not None and len(grids):
        hh, mm = assign_grid_codes(hh, grids), assign_grid_codes(mm, grids)
    h_code, m_code, all_codes, h_grid, m_grid = _grid_codes(hh, mm, grids)
    m_min, m_max = _member_bands(mm, min_links, max_links)
    crs = crs or (metric_crs(hh) if len(hh) else metric_crs(mm))
    h_xy = point_xy(hh, crs) if len(hh) else np.zeros((0, 2))
    m_xy = point_xy(mm, crs) if len(mm) else np.zeros((0, 2))
    borrow = None
    if allow_cross_grid and len(all_codes) > 1:
        if adjacency is None:
            if grids is None:
                raise ValueError("allow_cross_grid needs grid polygons or an adjacency mapping")
            adjacency = grid_adjacency(grids)
        borrow = _borrow_matrix(all_codes, h_grid, m_grid, m_max, adjacency)
    prev = _previous_members(hh, mm, previous)
    special = special_households(hh)
    sol = solve_arrays(h_xy, m_xy, h_grid, m_grid, m_min, m_max, borrow=borrow, prev=prev, special=special,
                       max_distance_m=max_distance_m, keep_bonus_m=keep_bonus_m,
                       distance_fn=distance_fn, candidates=candidates, n_jobs=n_jobs)
    inputs = LinkInputs(household_ids=hh["household_id"].to_numpy(), member_ids=mm["member_id"].to_numpy(),
                        h_code=h_code, m_code=m_code, h_grid=h_grid, m_grid=m_grid, h_xy=h_xy, m_xy=m_xy,
                        m_min=m_min, m_max=m_max, prev=prev, grid_codes=all_codes, default_max=max_links,
                        distance_fn=distance_fn, nearest_outside=nearest_outside,
                        had_previous=previous is not None, special=special)
    return build_report(inputs, sol)

