"""Household–member linkage (包片联户): every household gets one party member, 5–10 each, optimally.

The policy (seed 001, 每名党员固定联系5-10户群众) asks that every household has a member who visits it
and that each member looks after between ``min_links`` and ``max_links`` households. By default a
household is linked only to a member of its own grid (包片 = by patch).

What "optimal" means here (the objective, in strict priority order)
-------------------------------------------------------------------
1. **Most households linked.**
2. **Smallest total shortfall below the members' minimums** — ``sum(max(0, min_links - load))``.
   The minimum is therefore a *hard* lower bound whenever any assignment can meet it, and a soft
   one otherwise: a member who can reach only 3 households still links those 3 and is reported
   ``below minimum`` (a street office would rather have 3 households visited than none), and when
   a grid has more members than households allow, households are spread so that as few members as
   possible fall short, rather than leaving some members idle. Priorities 1 and 2 never conflict:
   an augmenting path of the flow network below never lowers any member's load, so a flow with
   the largest filled minimum can always be augmented to a maximum flow without losing any of it.
3. **Fewest cross-grid links** (only when ``allow_cross_grid``): borrowing from a neighbouring grid
   is used only when it links more households or fills more minimums, never merely because a
   member across the border is a few metres closer.
4. **Smallest total walking distance** in metres (straight line in the local UTM projection of
   ``gridmap.metric``, or the caller's ``distance_fn``), minus ``keep_bonus_m`` for every previous
   link that is kept (stability: a link changes only if that saves more than the bonus).

Why the result is exactly optimal
---------------------------------
The problem is a min-cost flow: source → household (capacity 1) → member (capacity 1, cost =
distance) → sink by two parallel arcs, the *minimum part* (capacity ``min_links``, cost ``-W``)
and the *extra part* (capacity ``max_links - min_links``, cost 0), plus a bypass source → sink
(cost ``W`` per unlinked household). This is the standard lower-bound transformation with the
lower bound priced instead of imposed, which keeps the problem feasible when a minimum cannot be
met. Costs are integers (centimetres); the tier weights are chosen larger than the whole range of
every lower tier (``W > n·P + n·(Dmax + bonus)``, ``P > n·(Dmax + bonus)``), so minimising the
single cost minimises the priorities above lexicographically. Network-flow LPs have integral
optimal vertices and OR-Tools ``SimpleMinCostFlow`` solves them exactly.

Decomposition. Households can only be linked inside their grid (or, with ``allow_cross_grid``,
from a short grid to a neighbouring grid with spare capacity), so the candidate graph splits into
independent blocks — one per grid, or a few grids joined by borrowing — and the sum of the blocks'
optima is the optimum of the whole.

Two stages per block. Stage A solves without the minimum tier (OR-Tools' maximum flow of least
cost: no big weights, faster). If its certified optimum meets every member's minimum it is also
optimal for the full objective (it has the largest possible filled minimum, and the least cost
among all maximum flows); otherwise stage B solves the tiered network above.

Safe candidate pruning. Each block is first solved on a candidate subset of its arcs: every
household's ``candidates`` nearest members, every member's ``3 × max_links`` nearest households,
and every previous link. The optimality of that flow for the *full* block is then checked, not
assumed: shortest-path potentials ``π`` are computed on the residual network of the pruned flow
(Bellman–Ford; there is no negative cycle because that flow is optimal for the pruned network —
households are contracted away, so this runs on a dense graph of the members alone), and by LP
duality the flow is optimal for the full network iff every left-out arc ``h → m`` has
non-negative reduced cost ``c(h, m) + π(h) - π(m) ≥ 0`` (a left-out arc carries no flow, so
this is its complementary-slackness condition). When some arc violates, Bellman–Ford is first
continued from ``π`` on the contracted residual graph of *all* arcs: if it settles, those are
feasible potentials of the full residual network — no negative cycle, so the flow is optimal
after all (``π`` was just one dual solution of many) and no re-solve is needed. Otherwise the
violating arcs are added and the block is re-solved, until the certificate holds. (A re-solve
may instead use the flow's exact neighbourhood — its own arcs and all arcs of reduced cost below
a bound on the negative cycles that can still improve it — when that set is smaller; it
contains an optimal solution, see ``_next_candidates``.) The answer is therefore the exact
optimum of the unpruned problem; the candidate numbers only change the speed.

Rounding: distances enter the solver in whole centimetres, so the total distance is optimal to
within 1 cm per link of the true real-valued optimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import pandas as pd
from ortools.graph.python import min_cost_flow
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from gridmap.contract import MAX_LINKS, MIN_LINKS
from gridmap.metric import metric_crs, point_xy
from gridmap.visit_order import order_visits

#: Reasons a household is left unlinked (most fundamental first).
REASON_NO_GRID = "no grid"
REASON_NO_MEMBER = "no member in grid"
REASON_BEYOND = "beyond max distance"
REASON_ALL_FULL = "all full"

#: Member statuses.
STATUS_IN_BAND = "in band"
STATUS_BELOW_MIN = "below minimum"
STATUS_UNAVAILABLE = "unavailable"

#: Why a member is below the minimum.
SHORT_FEW_REACHABLE = "too few reachable households"
SHORT_SHARED = "households needed by other members"

#: Distance resolution of the solver: centimetres.
COST_SCALE = 100
#: Above this many household×member pairs a block is processed in row chunks.
_CHUNK_PAIRS = 2_000_000
#: Bound on ``W × nodes`` (largest possible |potential|) keeping int64 arithmetic exact with room to spare.
_SAFE_COST_SUM = 2 ** 60
#: Member-side candidates: each member keeps its nearest `_MEMBER_SIDE × max_links` households.
_MEMBER_SIDE = 3.0
#: Re-solves per block that may use the (smaller, exact) neighbourhood before candidates only grow.
_NARROW_ROUNDS = 4
#: Bellman–Ford rounds allowed when repairing pruned potentials into full ones (speed only).
_REPAIR_ROUNDS = 12

DistanceFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class LinkResult:
    """Outcome of :func:`link_households`.

    Attributes
    ----------
    links : DataFrame
        One row per linked household: ``household_id``, ``member_id``, ``distance_m`` (metres),
        ``visit_order`` (1 = first stop on the member's route), ``grid_code`` (household's),
        ``member_grid_code``, ``cross_grid`` and ``kept`` (the link existed in ``previous``).
    unlinked : DataFrame
        ``household_id``, ``grid_code``, ``reason`` (one of the ``REASON_*`` values).
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


# ------------------------------------------------------------------------------------------------
# Grid adjacency


def grid_adjacency(grids, snap_m: float = 1.0, min_shared_m: float = 5.0) -> dict[str, set[str]]:
    """Neighbouring grids: pairs whose boundaries share at least ``min_shared_m`` metres.

    Parameters
    ----------
    grids : GeoDataFrame
        ``grid_code`` and polygons in WGS84 (EPSG:4326).
    snap_m : float
        Gap tolerance in metres: digitised neighbours rarely share vertices exactly, so a boundary
        counts as shared where it lies within ``snap_m`` of the other grid.
    min_shared_m : float
        Minimum shared boundary length in metres; grids touching only at a corner are not
        neighbours (a corner within ``snap_m`` yields at most ``2·√2·snap_m`` of "shared" boundary,
        so keep ``min_shared_m`` above that).

    Returns
    -------
    dict
        ``grid_code -> set of neighbouring grid_codes`` (symmetric; every grid is a key).
    """
    import shapely

    out: dict[str, set[str]] = {str(c): set() for c in grids["grid_code"]}
    if len(grids) < 2:
        return out
    projected = grids.to_crs(metric_crs(grids))
    geoms = projected.geometry.values
    left, right = projected.sindex.query(geoms, predicate="dwithin", distance=snap_m)
    keep = left < right
    left, right = left[keep], right[keep]
    if len(left) == 0:
        return out
    shared = shapely.length(shapely.intersection(shapely.boundary(geoms[left]),
                                                 shapely.buffer(geoms[right], snap_m)))
    codes = grids["grid_code"].astype(str).to_numpy()
    for a, b in zip(codes[left[shared >= min_shared_m]], codes[right[shared >= min_shared_m]]):
        if a != b:
            out[a].add(b)
            out[b].add(a)
    return out


# ------------------------------------------------------------------------------------------------
# The array-level solver


@dataclass
class _Problem:
    """Arrays of one linkage problem (planar metres); grid ids are ints, -1 = no grid."""

    h_xy: np.ndarray
    m_xy: np.ndarray
    h_grid: np.ndarray
    m_grid: np.ndarray
    m_min: np.ndarray
    m_max: np.ndarray
    borrow: np.ndarray  # (G, G) bool: households of grid a may link to members of grid b (a != b)
    prev: np.ndarray  # (n,) previous member index or -1
    max_distance_m: float | None
    keep_bonus_m: float
    distance_fn: DistanceFn | None
    candidates: int


@dataclass
class _Solution:
    member_of: np.ndarray
    has_member: np.ndarray  # household has any allowed member ignoring distance
    has_within: np.ndarray  # ... within max distance
    reachable: np.ndarray  # per member: households it may link
    stats: dict


def _euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Straight-line metres between every row of ``a`` and of ``b`` (planar coordinates)."""
    return np.hypot(a[:, 0, None] - b[None, :, 0], a[:, 1, None] - b[None, :, 1])


def solve_arrays(h_xy, m_xy, h_grid, m_grid, m_min, m_max, *, borrow=None, prev=None,
                 max_distance_m=None, keep_bonus_m=200.0, distance_fn=None, candidates=12,
                 n_jobs: int = 1) -> _Solution:
    """Exact linkage on arrays (the engine behind :func:`link_households`).

    Parameters
    ----------
    h_xy, m_xy : (n, 2), (m, 2) float arrays
        Household and member positions in metres (planar, e.g. UTM).
    h_grid, m_grid : int arrays
        Grid index of every household / member, ``-1`` for none (a household without a grid is
        never linked; a member without a grid never links).
    m_min, m_max : int arrays
        Per-member minimum and maximum number of households (``m_max = 0``: not available).
    borrow : (G, G) bool array, optional
        ``borrow[a, b]``: households of grid ``a`` may link to members of grid ``b`` (``a != b``).
    prev : (n,) int array, optional
        Previous member index of every household, ``-1`` for none.
    max_distance_m : float, optional
        No link longer than this many metres.
    keep_bonus_m : float
        Metres subtracted from the cost of every previous link that is kept.
    distance_fn : callable, optional
        ``distance_fn(h_xy_rows, m_xy_cols) -> (rows, cols)`` metres; straight line by default.
    candidates : int
        Arcs per household in the first (pruned) solve of a block; the certificate makes the
        result independent of this number, only the speed changes.
    n_jobs : int
        Worker processes (fork) that solve blocks in parallel; blocks are independent, so the
        result is the same for any value.

    Returns
    -------
    _Solution
        ``member_of`` (member index or -1 per household), reachability flags and solver stats.
    """
    h_grid = np.asarray(h_grid, dtype=np.int64)
    m_grid = np.asarray(m_grid, dtype=np.int64)
    n, m = len(h_grid), len(m_grid)
    n_grids = int(max(h_grid.max(initial=-1), m_grid.max(initial=-1))) + 1
    if borrow is None:
        borrow = np.zeros((n_grids, n_grids), dtype=bool)
    borrow = np.asarray(borrow, dtype=bool)
    if borrow.shape[0] < n_grids:
        grown = np.zeros((n_grids, n_grids), dtype=bool)
        grown[: borrow.shape[0], : borrow.shape[1]] = borrow
        borrow = grown
    np.fill_diagonal(borrow, False)
    prob = _Problem(
        h_xy=np.asarray(h_xy, dtype=float).reshape(n, 2), m_xy=np.asarray(m_xy, dtype=float).reshape(m, 2),
        h_grid=h_grid, m_grid=m_grid,
        m_min=np.asarray(m_min, dtype=np.int64), m_max=np.asarray(m_max, dtype=np.int64),
        borrow=borrow, prev=np.full(n, -1, dtype=np.int64) if prev is None else np.asarray(prev, dtype=np.int64),
        max_distance_m=max_distance_m, keep_bonus_m=float(keep_bonus_m), distance_fn=distance_fn,
        candidates=max(1, int(candidates)),
    )
    if np.any(prob.m_min > prob.m_max) or np.any(prob.m_min < 0):
        raise ValueError("every member needs 0 <= min_links <= max_links")
    sol = _Solution(member_of=np.full(n, -1, dtype=np.int64), has_member=np.zeros(n, dtype=bool),
                    has_within=np.zeros(n, dtype=bool), reachable=np.zeros(m, dtype=np.int64),
                    stats={"blocks": 0, "arcs_full": 0, "arcs_solved": 0, "rounds": 0, "unpruned_blocks": 0,
                           "tiered_blocks": 0, "narrowed_rounds": 0})
    # Blocks = connected components of the grid graph "same grid or borrowing allowed".
    if n_grids == 0:
        return sol
    g_a, g_b = np.nonzero(borrow | borrow.T)
    graph = coo_matrix((np.ones(len(g_a)), (g_a, g_b)), shape=(n_grids, n_grids))
    _, block_of_grid = connected_components(graph, directed=False)
    active = prob.m_max > 0
    h_block = np.where(h_grid >= 0, block_of_grid[np.maximum(h_grid, 0)], -1)
    m_block = np.where((m_grid >= 0) & active, block_of_grid[np.maximum(m_grid, 0)], -1)
    h_order = np.argsort(h_block, kind="stable")
    m_order = np.argsort(m_block, kind="stable")
    h_bounds = np.searchsorted(h_block[h_order], np.arange(block_of_grid.max() + 2))
    m_bounds = np.searchsorted(m_block[m_order], np.arange(block_of_grid.max() + 2))
    blocks = []
    for b in range(block_of_grid.max() + 1):
        hs = h_order[h_bounds[b]:h_bounds[b + 1]]
        ms = m_order[m_bounds[b]:m_bounds[b + 1]]
        if len(hs) and len(ms):
            blocks.append((hs, ms))
    if n_jobs > 1 and len(blocks) > 1:
        import multiprocessing as mp

        batches = [blocks[i::4 * n_jobs] for i in range(min(len(blocks), 4 * n_jobs))]
        with mp.get_context("fork").Pool(n_jobs, initializer=_init_worker, initargs=(prob,)) as pool:
            for h_idx, m_idx, member_of, has_member, has_within, reachable, stats in pool.imap_unordered(
                    _solve_batch, batches):
                sol.member_of[h_idx] = member_of
                sol.has_member[h_idx] = has_member
                sol.has_within[h_idx] = has_within
                sol.reachable[m_idx] = reachable
                for k, v in stats.items():
                    sol.stats[k] += v
        return sol
    for hs, ms in blocks:
        _solve_block(prob, hs, ms, sol)
    return sol


_WORKER_PROBLEM: _Problem | None = None


def _init_worker(prob: _Problem) -> None:
    global _WORKER_PROBLEM
    _WORKER_PROBLEM = prob


def _solve_batch(blocks):
    """Solve some blocks in a worker; returns only the rows they touched."""
    prob = _WORKER_PROBLEM
    n, m = len(prob.h_grid), len(prob.m_grid)
    sol = _Solution(member_of=np.full(n, -1, dtype=np.int64), has_member=np.zeros(n, dtype=bool),
                    has_within=np.zeros(n, dtype=bool), reachable=np.zeros(m, dtype=np.int64),
                    stats={"blocks": 0, "arcs_full": 0, "arcs_solved": 0, "rounds": 0, "unpruned_blocks": 0,
                           "tiered_blocks": 0, "narrowed_rounds": 0})
    for hs, ms in blocks:
        _solve_block(prob, hs, ms, sol)
    h_idx = np.concatenate([hs for hs, _ in blocks])
    m_idx = np.concatenate([ms for _, ms in blocks])
    return (h_idx, m_idx, sol.member_of[h_idx], sol.has_member[h_idx], sol.has_within[h_idx],
            sol.reachable[m_idx], sol.stats)


class _Block:
    """Cost rows of one block, computed in row chunks (cached when the block is small)."""

    def __init__(self, prob: _Problem, hs: np.ndarray, ms: np.ndarray):
        self.prob, self.hs, self.ms = prob, hs, ms
        # ms is increasing (stable sort by block), so previous members map by binary search.
        prev = prob.prev[hs]
        pos = np.minimum(np.searchsorted(ms, prev), len(ms) - 1)
        self.prev_local = np.where((prev >= 0) & (ms[pos] == prev), pos, -1).astype(np.int64)
        self.rows_per_chunk = max(1, _CHUNK_PAIRS // max(1, len(ms)))
        self.cache: list | None = [] if len(hs) * len(ms) <= _CHUNK_PAIRS else None
        self.cost_cache: dict[int, np.ndarray] = {}
        self.bonus = int(round(prob.keep_bonus_m * COST_SCALE))
        self.P = 0  # cross-grid tier weight, set once Dmax is known

    def chunks(self):
        """Yield ``(rows, dist, allowed, within, cross)`` for row ranges of the block."""
        if self.cache:
            yield from self.cache
            return
        prob, hs, ms = self.prob, self.hs, self.ms
        fn = prob.distance_fn or _euclidean
        for start in range(0, len(hs), self.rows_per_chunk):
            rows = np.arange(start, min(len(hs), start + self.rows_per_chunk))
            hg = prob.h_grid[hs[rows]][:, None]
            mg = prob.m_grid[ms][None, :]
            same = hg == mg
            cross = prob.borrow[hg, mg] & ~same
            allowed = same | cross
            dist = np.asarray(fn(prob.h_xy[hs[rows]], prob.m_xy[ms]), dtype=float)
            within = allowed & np.isfinite(dist)
            if prob.max_distance_m is not None:
                within &= dist <= prob.max_distance_m
            item = (rows, dist, allowed, within, cross)
            if self.cache is not None:
                self.cache.append(item)
            yield item

    def cost(self, rows, dist, within, cross) -> np.ndarray:
        """Integer arc costs (cm + cross tier − keep bonus) of ``rows`` × all members; ``_NO_ARC`` if none."""
        key = int(rows[0])
        if self.cache is not None and key in self.cost_cache:
            return self.cost_cache[key]
        c = np.rint(np.where(within, dist, 0.0) * COST_SCALE).astype(np.int64)
        if self.P:
            c += self.P * cross.astype(np.int64)
        has_prev = self.prev_local[rows] >= 0
        c[np.flatnonzero(has_prev), self.prev_local[rows][has_prev]] -= self.bonus
        c[~within] = _NO_ARC
        if self.cache is not None:
            self.cost_cache[key] = c
        return c


#: Cost marking "no arc" in dense cost matrices (far above any real cost, far below int64 overflow).
_NO_ARC = np.int64(2 ** 61)


def _solve_block(prob: _Problem, hs: np.ndarray, ms: np.ndarray, sol: _Solution) -> None:
    """Solve one block exactly: dense arrays when its cost matrix is small, row chunks otherwise."""
    if len(hs) * len(ms) <= _CHUNK_PAIRS:
        _solve_block_dense(prob, hs, ms, sol)
    else:
        _solve_block_chunked(prob, hs, ms, sol)


def _solve_block_dense(prob: _Problem, hs: np.ndarray, ms: np.ndarray, sol: _Solution) -> None:
    """The common case: the whole ``households × members`` cost matrix of the block fits in memory.

    Same algorithm and the same first pruned network as :func:`_solve_block_chunked`, on one
    dense matrix (no chunk bookkeeping), with two additions that save solver work:

    * when the potentials of the *pruned* residual network flag a left-out arc, Bellman–Ford is
      continued from them on the contracted graph of *all* arcs; if it settles, the flow has no
      negative cycle in the full residual network — it is optimal, the flag was a false alarm
      (the pruned potentials are one dual solution of many) and no re-solve is needed;
    * a re-solve uses the flow's exact neighbourhood when that is smaller than the old
      candidates plus the flagged arcs (:func:`_next_candidates`).
    """
    n, m = len(hs), len(ms)
    fn = prob.distance_fn or _euclidean
    dist = np.asarray(fn(prob.h_xy[hs], prob.m_xy[ms]), dtype=float)
    hg, mg = prob.h_grid[hs], prob.m_grid[ms]
    single_grid = bool((hg == hg[0]).all() and (mg == hg[0]).all())
    if single_grid:  # a block of one grid (the usual case): every pair is allowed, none crosses
        cross = None
        within = np.isfinite(dist)
        sol.has_member[hs] = True
    else:
        same = hg[:, None] == mg[None, :]
        cross = prob.borrow[hg[:, None], mg[None, :]] & ~same
        allowed = same | cross
        within = allowed & np.isfinite(dist)
        sol.has_member[hs] |= allowed.any(axis=1)
    if prob.max_distance_m is not None:
        within &= dist <= prob.max_distance_m
    all_within = bool(within.all())
    sol.has_within[hs] |= within.any(axis=1)
    col_within = within.sum(axis=0)
    sol.reachable[ms] += col_within
    n_full = int(col_within.sum())
    sol.stats["blocks"] += 1
    sol.stats["arcs_full"] += n_full
    if n_full == 0:
        return
    m_min, m_max = prob.m_min[ms], prob.m_max[ms]
    # ms is increasing (stable sort by block), so previous members map by binary search.
    prev = prob.prev[hs]
    pos = np.minimum(np.searchsorted(ms, prev), m - 1)
    prev_local = np.where((prev >= 0) & (ms[pos] == prev), pos, -1)
    p_rows = np.flatnonzero(prev_local >= 0)
    p_cols = prev_local[p_rows]
    any_cross = cross is not None and bool((cross & within).any())
    dmax = int(np.rint((dist.max() if all_within else dist[within].max()) * COST_SCALE))

    # Candidate ranking (heuristic only): own grid before borrowed, then distance − keep bonus.
    key = dist.copy() if all_within else np.where(within, dist, np.inf)
    if any_cross:
        key += np.where(cross, 1e12, 0.0)
    key[p_rows, p_cols] -= prob.keep_bonus_m
    k = min(prob.candidates, m)
    r = min(n, int(_MEMBER_SIDE * m_max.max()))
    # Thresholds by partition (no index bookkeeping); ties at a threshold all stay in.
    if k < m:
        cand = key <= np.partition(key, k - 1, axis=1)[:, k - 1:k]
    else:
        cand = np.ones((n, m), dtype=bool)
    if 0 < r < n:  # member side: its r cheapest households (dense clusters otherwise need extra rounds)
        cand |= key <= np.partition(key, r - 1, axis=0)[r - 1:r]
    elif r >= n:
        cand[:] = True
    cand[p_rows, p_cols] = True  # a previous link is always a candidate: stability never depends on pruning
    if not all_within:
        cand &= within
    pruned = int(cand.sum()) < n_full

    # Tier weights (see module docstring): P above the distance tier's range, W above both.
    bonus = int(round(prob.keep_bonus_m * COST_SCALE))
    r_dist = n * (dmax + bonus) + 1
    P = r_dist if any_cross else 0
    W = n * P + r_dist + 1
    if W * (n + m + 2) >= _SAFE_COST_SUM:
        raise RuntimeError(f"cost range too large for exact int64 arithmetic (block of {n} households)")
    cost = np.rint((dist if all_within else np.where(within, dist, 0.0)) * COST_SCALE).astype(np.int64)
    if P:
        cost += P * cross.astype(np.int64)
    cost[p_rows, p_cols] -= bonus
    if not all_within:
        cost[~within] = _NO_ARC
    if not pruned:
        sol.stats["unpruned_blocks"] += 1
    # Stage A then, only if a minimum is missed, stage B: see _solve_block_chunked.
    tiered = False
    rounds_here = 0
    while True:
        a_h, a_m = np.nonzero(cand)  # row-major: the same arc order as the chunked path
        a_cost = cost[a_h, a_m]
        flow = _solve_network(n, m, a_h, a_m, a_cost, m_min, m_max, W, tiered)
        sol.stats["rounds"] += 1
        sol.stats["arcs_solved"] += len(a_h)
        member_of = np.full(n, -1, dtype=np.int64)
        member_of[a_h[flow]] = a_m[flow]
        load = np.bincount(member_of[member_of >= 0], minlength=m)
        if pruned:
            pot = _dense_potentials(np.where(cand, cost, _NO_ARC), member_of, load, m_min, m_max, W, tiered,
                                    owned=True)
            if pot is None:
                raise RuntimeError("negative cycle in the residual network: the flow was not optimal")
            pi_h, pi_m, pi = pot
            rc = cost + pi_h[:, None] - pi_m[None, :]  # reduced costs; |π| < W·nodes keeps int64 exact
            missing = within & ~cand & (rc < 0)
            # A left-out arc priced negative by the pruned potentials may still be a false alarm
            # (they are one dual solution of many): try to repair them into potentials of the
            # full residual network, starting from the pruned ones. Success is the optimality
            # certificate itself; otherwise add the arcs and re-solve.
            if missing.any() and _dense_potentials(cost, member_of, load, m_min, m_max, W, tiered,
                                                   start=pi, max_rounds=_REPAIR_ROUNDS) is None:
                # Narrowing may shrink the set, so allow it only a few times per block: after that
                # the set only grows, which bounds the number of rounds.
                narrow = rounds_here < _NARROW_ROUNDS
                cand = _next_candidates(within, cand, missing, rc, a_h[flow], a_m[flow], narrow, sol.stats)
                rounds_here += 1
                continue
        # Optimal for the whole block at this stage; escalate only if a minimum is still missed.
        if not tiered and np.any(load < m_min):
            tiered = True
            sol.stats["tiered_blocks"] += 1
            continue
        break
    linked = member_of >= 0
    sol.member_of[hs[linked]] = ms[member_of[linked]]


def _next_candidates(within, cand, missing, rc, f_h, f_m, narrow, stats) -> np.ndarray:
    """Arcs for the next solve of a block whose pruned optimum is not optimal for the whole block.

    Either the old candidates plus the violating arcs, or — when it is smaller — the *exact
    neighbourhood* of the current flow: its own arcs and every arc whose reduced cost
    ``rc = c + π(h) − π(m)`` is below ``B = min(Σ_h max_m |rc⁻|, Σ_m max_h |rc⁻|)``, the sums
    over the violating arcs. Why that suffices: the optimum is the current flow plus a
    minimum-cost circulation in the full residual network, made of simple negative cycles
    (those of cost 0 can be dropped). Under ``π`` only violating arcs are negative, and a simple
    cycle enters every household and every member at most once, so it holds at most one
    violating arc per household and per member: its negative part is at most ``B``. Every other
    arc on it has ``0 ≤ rc < B`` — indeed below ``B`` without the terms of its own household and
    member, whose exit and entry it already uses; that sharper bound is the one applied. So the
    neighbourhood contains an optimal circulation and its optimum is the block's.
    """
    widened = cand | missing
    neg = np.where(missing, -rc, 0)
    row_max, col_max = neg.max(axis=1), neg.max(axis=0)
    if not narrow or min(row_max.sum(dtype=float), col_max.sum(dtype=float)) >= _SAFE_COST_SUM:
        return widened  # (a bound that large would keep nearly every arc anyway)
    # An arc h → m on such a cycle already uses h's exit and m's entry: leave their own terms out.
    bound = np.minimum((row_max.sum() - row_max)[:, None], (col_max.sum() - col_max)[None, :])
    near = within & (rc < bound)
    near[f_h, f_m] = True
    if int(near.sum()) < int(widened.sum()):
        stats["narrowed_rounds"] += 1
        return near
    return widened


def _dense_potentials(cost, member_of, load, m_min, m_max, W, tiered, start=None, max_rounds=None,
                      owned=False):
    """:func:`_potentials` for a dense block: arcs are the entries of ``cost`` below ``_NO_ARC``.

    Builds the same contracted graph on ``{s, t, members}`` (households contracted away) with
    segment minima over the rows grouped by their member instead of scattered updates, and
    returns the same potentials ``(pi_h, pi_m, pi)`` (``pi`` on ``s, t, members``), or ``None``
    when the residual network has a negative cycle (the flow is then not optimal for these arcs).

    ``start``: potentials to start Bellman–Ford from instead of the root's; they must be lengths
    of paths of this graph (e.g. shortest paths of a subgraph), so the result is the same.
    ``max_rounds``: give up (``None``) after this many rounds; a result is still exact.
    ``owned``: ``cost`` is a scratch copy that may be overwritten.
    """
    n, m = cost.shape
    S, T = 0, 1
    N = m + 2
    linked = member_of >= 0
    rows = np.arange(n)
    c_link = np.zeros(n, dtype=np.int64)
    c_link[linked] = cost[rows[linked], member_of[linked]]
    free = cost if owned else cost.copy()
    free[rows[linked], member_of[linked]] = _NO_ARC  # an arc with flow has no forward residual
    col_min = free.min(axis=0)
    mat = np.full((N, N), _NO_ARC, dtype=np.int64)
    # Household rows grouped by their tail in the contracted graph: own member, or s if unlinked.
    grp = np.where(linked, member_of + 2, S)
    order = np.argsort(grp, kind="stable")
    g_sorted = grp[order]
    starts = np.concatenate(([0], np.flatnonzero(g_sorted[1:] != g_sorted[:-1]) + 1))
    heads = g_sorted[starts]
    free -= c_link[:, None]
    red = np.minimum.reduceat(free[order], starts, axis=0)
    mat[heads, 2:] = np.where(red >= _NO_ARC // 2, _NO_ARC, red)
    back = np.minimum.reduceat(-c_link[order], starts)
    lh = heads != S
    mat[heads[lh], S] = back[lh]  # member → s (undo a link)
    # Member ↔ t residual arcs (the cheaper of parallel arcs counts).
    if tiered:
        f_min = np.minimum(load, m_min)
        f_extra = load - f_min
        mat[2:, T] = np.where(f_min < m_min, -W, np.where(f_extra < m_max - m_min, 0, _NO_ARC))
        mat[T, 2:] = np.where(f_extra > 0, 0, np.where(f_min > 0, W, _NO_ARC))
    else:
        mat[2:, T] = np.where(load < m_max, 0, _NO_ARC)
        mat[T, 2:] = np.where(load > 0, 0, _NO_ARC)
    unlinked = n - int(linked.sum())
    if unlinked < n:
        mat[S, T] = min(mat[S, T], W)
    if unlinked > 0:
        mat[T, S] = min(mat[T, S], -W)
    pi = np.zeros(N, dtype=np.int64)
    # Root → household → member paths (a household's own potential is ≤ 0 through the root).
    pi[2:] = np.minimum(col_min, 0)
    if start is not None:
        pi = np.minimum(pi, start)
    scratch = np.empty((N, N), dtype=np.int64)
    relaxed = np.empty(N, dtype=np.int64)
    for _ in range(N + 1 if max_rounds is None else min(N + 1, max_rounds)):
        np.add(pi[:, None], mat, out=scratch)
        scratch.min(axis=0, out=relaxed)
        if not (relaxed < pi).any():
            break
        np.minimum(pi, relaxed, out=pi)
    else:
        return None
    pi_h = np.where(linked, np.minimum(0, pi[np.maximum(member_of, 0) + 2] - c_link), min(0, int(pi[S])))
    return pi_h, pi[2:], pi


def _solve_block_chunked(prob: _Problem, hs: np.ndarray, ms: np.ndarray, sol: _Solution) -> None:
    """A block too large for one dense cost matrix (e.g. inputs without grid codes), in row chunks."""
    blk = _Block(prob, hs, ms)
    n, m = len(hs), len(ms)
    m_min, m_max = prob.m_min[ms], prob.m_max[ms]
    k = min(prob.candidates, m)
    r = min(n, int(_MEMBER_SIDE * m_max.max()))  # member side: a multiple of the capacity
    arcs: list[np.ndarray] = []
    dmax = 0
    any_cross = False
    n_full = 0
    for rows, dist, allowed, within, cross in blk.chunks():
        sol.has_member[hs[rows]] |= allowed.any(axis=1)
        sol.has_within[hs[rows]] |= within.any(axis=1)
        sol.reachable[ms] += within.sum(axis=0)
        n_full += int(within.sum())
        if not within.any():
            continue
        dmax = max(dmax, int(np.rint(dist[within].max() * COST_SCALE)))
        any_cross |= bool((cross & within).any())
        # Candidate ranking (heuristic only): own grid before borrowed, then distance − keep bonus.
        key = np.where(within, dist + np.where(cross, 1e12, 0.0), np.inf)
        prev_cols = blk.prev_local[rows]
        has_prev = prev_cols >= 0
        key[np.flatnonzero(has_prev), prev_cols[has_prev]] -= prob.keep_bonus_m
        # Household side: its k cheapest members.
        top = np.argpartition(key, k - 1, axis=1)[:, :k] if k < m else np.broadcast_to(np.arange(m), (len(rows), m))
        arcs.append(rows[:, None] * m + top)
        # Member side: its r cheapest households (dense clusters otherwise need extra rounds).
        rr = min(r, len(rows))
        if rr > 0:
            top_h = (np.argpartition(key, rr - 1, axis=0)[:rr] if rr < len(rows)
                     else np.broadcast_to(np.arange(len(rows))[:, None], (len(rows), m)))
            arcs.append(rows[top_h] * m + np.arange(m)[None, :])
        else:
            arcs.append(np.empty(0, dtype=np.int64))
        # A previous link is always a candidate, so stability never depends on pruning.
        arcs.append(rows[has_prev] * m + prev_cols[has_prev])
        hm_chunk = np.concatenate([a.ravel() for a in arcs[-3:]])
        arcs[-3:] = [hm_chunk[within[hm_chunk // m - rows[0], hm_chunk % m]]]
    sol.stats["blocks"] += 1
    sol.stats["arcs_full"] += n_full
    if n_full == 0:
        return
    # Tier weights (see module docstring): P above the distance tier's range, W above both.
    r_dist = n * (dmax + blk.bonus) + 1
    blk.P = r_dist if any_cross else 0
    W = n * blk.P + r_dist + 1
    hm = _sorted_unique(np.concatenate(arcs))
    pruned = len(hm) < n_full
    if W * (n + m + 2) >= _SAFE_COST_SUM:
        raise RuntimeError(f"cost range too large for exact int64 arithmetic (block of {n} households)")
    if not pruned:
        sol.stats["unpruned_blocks"] += 1
    # Stage A ignores the minimum tier (max flow, then least cost: no big weights, faster). If
    # its certified optimum already meets every minimum it is also optimal for the tiered
    # objective (it has the largest possible filled minimum and the least cost among maximum
    # flows); otherwise stage B solves the full tiered network.
    tiered = False
    while True:
        a_h, a_m = hm // m, hm % m
        a_cost = _arc_costs(blk, a_h, a_m)
        flow = _solve_network(n, m, a_h, a_m, a_cost, m_min, m_max, W, tiered)
        sol.stats["rounds"] += 1
        sol.stats["arcs_solved"] += len(hm)
        member_of = np.full(n, -1, dtype=np.int64)
        member_of[a_h[flow]] = a_m[flow]
        load = np.bincount(member_of[member_of >= 0], minlength=m)
        if pruned:
            pi_h, pi_m = _potentials(n, m, a_h, a_m, a_cost, flow, member_of, load, m_min, m_max, W, tiered)
            missing = _violations(blk, pi_h, pi_m, member_of)
            if len(missing):
                hm = _sorted_unique(np.concatenate([hm, missing]))
                continue
        # Optimal for the whole block at this stage; escalate only if a minimum is still missed.
        if not tiered and np.any(load < m_min):
            tiered = True
            sol.stats["tiered_blocks"] += 1
            continue
        break
    sol.member_of[hs[member_of >= 0]] = ms[member_of[member_of >= 0]]


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    a = np.sort(a)
    return a[np.r_[True, a[1:] != a[:-1]]] if len(a) else a


def _arc_costs(blk: _Block, a_h: np.ndarray, a_m: np.ndarray) -> np.ndarray:
    out = np.empty(len(a_h), dtype=np.int64)
    for rows, dist, _, within, cross in blk.chunks():
        sel = np.flatnonzero((a_h >= rows[0]) & (a_h <= rows[-1]))
        out[sel] = blk.cost(rows, dist, within, cross)[a_h[sel] - rows[0], a_m[sel]]
    return out


def _solve_network(n, m, a_h, a_m, a_cost, m_min, m_max, W, tiered) -> np.ndarray:
    """Min-cost flow of one block; returns which household→member arcs carry flow.

    ``tiered``: minimum-part arcs priced ``-W`` and a bypass ``s → t`` priced ``W`` (module
    docstring). Otherwise one arc per member (capacity ``max_links``) and OR-Tools' maximum flow
    of least cost, which is the same optimum as the bypass priced at any large ``W``.
    """
    s, t = 0, n + m + 1
    mid = np.arange(m)
    if tiered:
        has_min = m_min > 0
        has_extra = m_max > m_min
        sink_tails = np.concatenate([mid[has_min], mid[has_extra]]) + n + 1
        sink_caps = np.concatenate([m_min[has_min], (m_max - m_min)[has_extra]])
        sink_costs = np.concatenate([np.full(has_min.sum(), -W, np.int64), np.zeros(has_extra.sum(), np.int64)])
        extra = ([s], [t], [n], [W])
    else:
        sink_tails, sink_caps, sink_costs = mid + n + 1, m_max, np.zeros(m, np.int64)
        extra = ([], [], [], [])
    tails = np.concatenate([np.zeros(n, np.int64), a_h + 1, sink_tails, extra[0]]).astype(np.int64)
    heads = np.concatenate([np.arange(n) + 1, a_m + n + 1, np.full(len(sink_tails), t), extra[1]]).astype(np.int64)
    caps = np.concatenate([np.ones(n, np.int64), np.ones(len(a_h), np.int64), sink_caps, extra[2]]).astype(np.int64)
    costs = np.concatenate([np.zeros(n, np.int64), a_cost, sink_costs, extra[3]]).astype(np.int64)
    smcf = min_cost_flow.SimpleMinCostFlow()
    arcs = smcf.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
    smcf.set_nodes_supplies(np.array([s, t]), np.array([n, -n]))
    status = smcf.solve() if tiered else smcf.solve_max_flow_with_min_cost()
    if status != smcf.OPTIMAL:
        raise RuntimeError(f"min-cost flow failed with status {status} (block of {n} households, {m} members)")
    return smcf.flows(arcs[n:n + len(a_h)]) > 0


def _potentials(n, m, a_h, a_m, a_cost, flow, member_of, load, m_min, m_max, W, tiered):
    """Shortest-path potentials of the residual network of a block's (pruned) optimal flow.

    Distances are from a virtual root with 0-cost arcs to every node, so ``π ≤ 0``. Households are
    contracted away: a linked household's only residual in-arc comes from its member (cost
    ``-c``), an unlinked one's only from the source, so every path through a household is an arc
    of a graph on ``{s, t, members}`` alone — Bellman–Ford there is tiny and dense. The bypass
    ``s → t`` (cost ``W`` per unlinked household) is included in both stages. Exact int64.

    Returns
    -------
    (pi_h, pi_m) : int64 arrays
    """
    S, T = 0, 1
    linked = member_of >= 0
    c_link = np.zeros(n, dtype=np.int64)
    c_link[a_h[flow]] = a_cost[flow]
    free = ~flow
    fh, fm, fc = a_h[free], a_m[free], a_cost[free]
    src = np.where(linked[fh], member_of[fh] + 2, S)
    u = [src, member_of[linked] + 2]
    v = [fm + 2, np.full(linked.sum(), S)]
    w = [fc - np.where(linked[fh], c_link[fh], 0), -c_link[linked]]
    mid = np.arange(m) + 2
    if tiered:
        f_min = np.minimum(load, m_min)
        f_extra = load - f_min
        sink = [(f_min < m_min, mid, T, -W), (f_min > 0, T, mid, W),
                (f_extra < m_max - m_min, mid, T, 0), (f_extra > 0, T, mid, 0)]
    else:
        sink = [(load < m_max, mid, T, 0), (load > 0, T, mid, 0)]
    for mask, uu, vv, ww in sink:
        sel = np.flatnonzero(mask)
        u.append(np.broadcast_to(uu, m)[sel])
        v.append(np.broadcast_to(vv, m)[sel])
        w.append(np.full(len(sel), ww, dtype=np.int64))
    unlinked = n - int(linked.sum())
    if unlinked < n:
        u.append([S]); v.append([T]); w.append([W])
    if unlinked > 0:
        u.append([T]); v.append([S]); w.append([-W])
    N = m + 2
    mat = np.full((N, N), _NO_ARC, dtype=np.int64)
    np.minimum.at(mat, (np.concatenate(u).astype(np.int64), np.concatenate(v).astype(np.int64)),
                  np.concatenate(w).astype(np.int64))
    pi = np.zeros(N, dtype=np.int64)
    # Root → household → member paths (a household's own potential is ≤ 0 through the root).
    if len(fm):
        np.minimum.at(pi, fm + 2, np.minimum(fc, 0))
    for _ in range(N + 1):
        cand = (pi[:, None] + mat).min(axis=0)
        if not (cand < pi).any():
            break
        pi = np.minimum(pi, cand)
    else:
        raise RuntimeError("negative cycle in the residual network: the flow was not optimal")
    pi_h = np.where(linked, np.minimum(0, pi[np.maximum(member_of, 0) + 2] - c_link), min(0, int(pi[S])))
    return pi_h, pi[2:]


def _violations(blk: _Block, pi_h: np.ndarray, pi_m: np.ndarray, member_of: np.ndarray) -> np.ndarray:
    """Arcs without flow (as ``h * m + m_idx``) whose reduced cost ``c + π(h) − π(m)`` is negative.

    Arcs of the pruned network never violate (the potentials are exact shortest paths there), so
    any arc found is a left-out one that could improve the flow.
    """
    m = len(blk.ms)
    found = []
    for rows, dist, _, within, cross in blk.chunks():
        c = blk.cost(rows, dist, within, cross)
        rc = c + pi_h[rows][:, None] - pi_m[None, :]
        bad = within & (rc < 0)
        mo = member_of[rows]
        has = mo >= 0
        bad[np.flatnonzero(has), mo[has]] = False  # arcs with flow have no forward residual
        r, cidx = np.nonzero(bad)
        if len(r):
            found.append(rows[r] * m + cidx)
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


# ------------------------------------------------------------------------------------------------
# The GeoDataFrame interface


def _codes(series) -> np.ndarray:
    """Grid codes as strings with missing values as None."""
    out = np.empty(len(series), dtype=object)
    for i, v in enumerate(series):
        if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip()) or v is pd.NA:
            out[i] = None
        else:
            out[i] = str(v).strip()
    return out


def _truthy(v) -> bool:
    """``available`` flag; a missing value means available."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return True
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.number)):
        return v != 0
    return str(v).strip().lower() not in {"false", "f", "0", "no", "n", "否", "无"}


def _int_column(df, name, default) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), default, dtype=np.int64)
    vals = pd.to_numeric(df[name], errors="coerce")
    return vals.fillna(default).round().astype(np.int64).to_numpy()


def link_households(households, members, *, min_links: int = MIN_LINKS, max_links: int = MAX_LINKS,
                    max_distance_m: float | None = None, allow_cross_grid: bool = False, grids=None,
                    adjacency: Mapping[str, set[str]] | None = None, previous: pd.DataFrame | None = None,
                    keep_bonus_m: float = 200.0, distance_fn: DistanceFn | None = None,
                    candidates: int = 12, crs: str | None = None, nearest_outside: int = 5,
                    n_jobs: int = 1) -> LinkResult:
    """Link every household to one party member, optimally (包片联户).

    Parameters
    ----------
    households : GeoDataFrame
        ``household_id`` and points in WGS84 (EPSG:4326); ``grid_code`` optional.
    members : GeoDataFrame
        ``member_id`` and home/post points in WGS84; optional ``grid_code``, ``min_links``,
        ``max_links`` (per-member overrides of the defaults) and ``available`` (false = not linked).
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
        loads and statuses, per-grid shortages and a summary. Optimality: see the module docstring.
    """
    from gridmap.census import assign_grid_codes

    hh = households.reset_index(drop=True)
    mm = members.reset_index(drop=True)
    if grids is not None and len(grids):
        hh = assign_grid_codes(hh, grids)
        mm = assign_grid_codes(mm, grids)
    use_grids = "grid_code" in hh.columns or "grid_code" in mm.columns
    h_code = _codes(hh["grid_code"]) if "grid_code" in hh.columns else np.full(len(hh), "" if not use_grids else None, dtype=object)
    m_code = _codes(mm["grid_code"]) if "grid_code" in mm.columns else np.full(len(mm), "" if not use_grids else None, dtype=object)
    if not use_grids:
        h_code[:] = ""
        m_code[:] = ""
    all_codes = sorted({c for c in h_code if c is not None} | {c for c in m_code if c is not None}
                       | ({str(c) for c in grids["grid_code"]} if grids is not None and len(grids) else set()))
    code_idx = {c: i for i, c in enumerate(all_codes)}
    h_grid = np.array([code_idx[c] if c is not None else -1 for c in h_code], dtype=np.int64)
    m_grid = np.array([code_idx[c] if c is not None else -1 for c in m_code], dtype=np.int64)

    m_min = _int_column(mm, "min_links", min_links)
    m_max = _int_column(mm, "max_links", max_links)
    if "available" in mm.columns:
        avail = np.array([_truthy(v) for v in mm["available"]], dtype=bool)
        m_max = np.where(avail, m_max, 0)
        m_min = np.where(avail, m_min, 0)
    m_min = np.minimum(m_min, m_max)

    crs = crs or (metric_crs(hh) if len(hh) else metric_crs(mm))
    h_xy = point_xy(hh, crs) if len(hh) else np.zeros((0, 2))
    m_xy = point_xy(mm, crs) if len(mm) else np.zeros((0, 2))

    n_grids = len(all_codes)
    borrow = np.zeros((n_grids, n_grids), dtype=bool)
    h_count = np.bincount(h_grid[h_grid >= 0], minlength=n_grids)
    cap = np.bincount(m_grid[m_grid >= 0], weights=m_max[m_grid >= 0], minlength=n_grids).astype(np.int64)
    if allow_cross_grid and n_grids > 1:
        if adjacency is None:
            if grids is None:
                raise ValueError("allow_cross_grid needs grid polygons or an adjacency mapping")
            adjacency = grid_adjacency(grids)
        short = h_count > cap
        spare = cap > h_count
        for a, neighbours in adjacency.items():
            ia = code_idx.get(str(a))
            if ia is None or not short[ia]:
                continue
            for b in neighbours:
                ib = code_idx.get(str(b))
                if ib is not None and ib != ia and spare[ib]:
                    borrow[ia, ib] = True

    prev = np.full(len(hh), -1, dtype=np.int64)
    if previous is not None and len(previous):
        m_pos = pd.Series(np.arange(len(mm)), index=mm["member_id"].astype(str))
        m_pos = m_pos[~m_pos.index.duplicated()]
        p = previous.dropna(subset=["household_id", "member_id"])
        p = pd.Series(p["member_id"].astype(str).to_numpy(), index=p["household_id"].astype(str).to_numpy())
        p = p[~p.index.duplicated(keep="last")]
        mapped = hh["household_id"].astype(str).map(p).map(m_pos)
        prev = mapped.fillna(-1).astype(np.int64).to_numpy()

    sol = solve_arrays(h_xy, m_xy, h_grid, m_grid, m_min, m_max, borrow=borrow, prev=prev,
                       max_distance_m=max_distance_m, keep_bonus_m=keep_bonus_m,
                       distance_fn=distance_fn, candidates=candidates, n_jobs=n_jobs)
    return _report(hh, mm, h_code, m_code, h_grid, m_grid, h_xy, m_xy, m_min, m_max, prev, sol,
                   all_codes, max_links, distance_fn, nearest_outside, previous is not None)


def _report(hh, mm, h_code, m_code, h_grid, m_grid, h_xy, m_xy, m_min, m_max, prev, sol,
            all_codes, default_max, distance_fn, n_outside, had_previous) -> LinkResult:
    from scipy.spatial import cKDTree

    member_of = sol.member_of
    linked = member_of >= 0
    li = np.flatnonzero(linked)
    mi = member_of[li]
    if distance_fn is None:
        dist = np.linalg.norm(h_xy[li] - m_xy[mi], axis=1) if len(li) else np.zeros(0)
    else:
        dist = np.array([float(distance_fn(h_xy[i:i + 1], m_xy[j:j + 1])[0, 0]) for i, j in zip(li, mi)])
    order = order_visits(member_of, h_xy, m_xy)
    hid = hh["household_id"].to_numpy()
    mid = mm["member_id"].to_numpy()
    links = pd.DataFrame({
        "household_id": hid[li], "member_id": mid[mi], "distance_m": dist, "visit_order": order[li],
        "grid_code": h_code[li], "member_grid_code": m_code[mi],
        "cross_grid": h_grid[li] != m_grid[mi], "kept": prev[li] == mi,
    })
    links = links.sort_values(["member_id", "visit_order"], kind="stable").reset_index(drop=True)

    un = np.flatnonzero(~linked)
    reason = np.where(h_grid[un] < 0, REASON_NO_GRID,
                      np.where(~sol.has_member[un], REASON_NO_MEMBER,
                               np.where(~sol.has_within[un], REASON_BEYOND, REASON_ALL_FULL)))
    unlinked = pd.DataFrame({"household_id": hid[un], "grid_code": h_code[un], "reason": reason})

    load = np.bincount(mi, minlength=len(mm))
    available = m_max > 0
    below = available & (load < m_min)
    status = np.where(~available, STATUS_UNAVAILABLE, np.where(below, STATUS_BELOW_MIN, STATUS_IN_BAND))
    short_reason = np.where(below, np.where(sol.reachable < m_min, SHORT_FEW_REACHABLE, SHORT_SHARED), "")
    members_df = pd.DataFrame({"member_id": mid, "grid_code": m_code, "load": load, "min_links": m_min,
                               "max_links": m_max, "reachable": sol.reachable, "status": status,
                               "shortfall_reason": short_reason})

    G = len(all_codes)
    hg = h_grid >= 0
    households_g = np.bincount(h_grid[hg], minlength=G)
    linked_g = np.bincount(h_grid[hg & linked], minlength=G)
    members_g = np.bincount(m_grid[(m_grid >= 0) & available], minlength=G)
    cap_g = np.bincount(m_grid[m_grid >= 0], weights=m_max[m_grid >= 0], minlength=G).astype(np.int64)
    unlinked_g = households_g - linked_g
    needed = -(-unlinked_g // max(1, int(default_max)))
    spare = np.maximum(m_max - load, 0)
    spare_idx = np.flatnonzero(spare > 0)
    tree = cKDTree(m_xy[spare_idx]) if len(spare_idx) else None
    outside: list[list[dict]] = [[] for _ in range(G)]
    for g in np.flatnonzero(unlinked_g > 0):
        if tree is None:
            continue
        pts = h_xy[un[h_grid[un] == g]]
        centre = pts.mean(axis=0)
        k = min(len(spare_idx), int(n_outside) + int((m_grid[spare_idx] == g).sum()))
        d, j = tree.query(centre, k=k)
        d, j = np.atleast_1d(d), np.atleast_1d(j)
        for dd, jj in zip(d, j):
            mem = spare_idx[jj]
            if m_grid[mem] == g:
                continue
            outside[g].append({"member_id": mid[mem], "grid_code": m_code[mem],
                               "distance_m": round(float(dd), 1), "spare": int(spare[mem])})
            if len(outside[g]) >= n_outside:
                break
    grids_df = pd.DataFrame({"grid_code": all_codes, "households": households_g, "linked": linked_g,
                             "unlinked": unlinked_g, "members": members_g, "capacity": cap_g,
                             "members_needed": needed, "nearest_outside": outside})

    n_h = len(hh)
    summary = {
        "households": int(n_h), "linked": int(len(li)), "unlinked": int(len(un)),
        "linked_pct": round(100.0 * len(li) / n_h, 2) if n_h else 100.0,
        "unlinked_by_reason": {r: int((reason == r).sum()) for r in
                               (REASON_NO_GRID, REASON_NO_MEMBER, REASON_BEYOND, REASON_ALL_FULL) if (reason == r).any()},
        "members": int(len(mm)), "members_available": int(available.sum()),
        "members_in_band": int((status == STATUS_IN_BAND).sum()),
        "members_below_min": int(below.sum()), "members_idle": int((available & (load == 0)).sum()),
        "total_distance_m": round(float(dist.sum()), 1),
        "mean_distance_m": round(float(dist.mean()), 1) if len(dist) else 0.0,
        "cross_grid_links": int(links["cross_grid"].sum()),
        "grids_short": int((unlinked_g > 0).sum()), "members_needed": int(needed.sum()),
        "solver": dict(sol.stats),
    }
    if had_previous:
        had = prev >= 0
        summary["changes"] = {
            "kept": int((had & (member_of == prev)).sum()),
            "reassigned": int((had & linked & (member_of != prev)).sum()),
            "dropped": int((had & ~linked).sum()),
            "added": int((~had & linked).sum()),
        }
        summary["links_changed"] = int(summary["changes"]["reassigned"] + summary["changes"]["dropped"]
                                       + summary["changes"]["added"])
    return LinkResult(links=links, unlinked=unlinked, members=members_df, grids=grids_df, summary=summary)
