"""Arrays of one linkage problem (包片联户), the solution being filled in, and the solver's constants.

Positions are planar metres (e.g. UTM from ``gridmap.metric.point_xy``); grid ids are integers
with ``-1`` for "no grid".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

#: Distance resolution of the solver: centimetres.
COST_SCALE = 100
#: Above this many household×member pairs a block is processed in row chunks.
CHUNK_PAIRS = 2_000_000
#: Bound on ``W × nodes`` (largest possible |potential|) keeping int64 arithmetic exact with room to spare.
SAFE_COST_SUM = 2 ** 60
#: Member-side candidates: each member keeps its nearest ``MEMBER_SIDE × max_links`` households.
MEMBER_SIDE = 3.0
#: Re-solves per block that may use the (smaller, exact) neighbourhood before candidates only grow.
NARROW_ROUNDS = 4
#: Bellman–Ford rounds allowed when repairing pruned potentials into full ones (speed only).
REPAIR_ROUNDS = 12
#: How dense blocks are solved: ``"paths"`` (compiled shortest paths on all arcs, certified by their
#: duals: ``transport``) or ``"pruned"`` (OR-Tools on candidate arcs, certified and re-solved).
DENSE_SOLVER = "paths"
#: Cost marking "no arc" in dense cost matrices (far above any real cost, far below int64 overflow).
NO_ARC = np.int64(2 ** 61)

DistanceFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Counters reported in ``summary["solver"]``.
STAT_KEYS = ("blocks", "arcs_full", "arcs_solved", "rounds", "unpruned_blocks", "tiered_blocks",
             "narrowed_rounds")


#: Stages of the engine timed in ``Solution.seconds`` (CPU seconds of the process, summed over blocks
#: and workers: CPU rather than wall because the machines it is measured on are shared).
STAGES = ("blocks", "pairs", "candidates", "flow", "certificate")


@dataclass
class Problem:
    """Arrays of one linkage problem (planar metres); grid ids are ints, -1 = no grid."""

    h_xy: np.ndarray
    m_xy: np.ndarray
    h_grid: np.ndarray
    m_grid: np.ndarray
    m_min: np.ndarray
    m_max: np.ndarray
    borrow: np.ndarray  # (G, G) bool: households of grid a may link to members of grid b (a != b)
    prev: np.ndarray  # (n,) previous member index or -1
    special: np.ndarray  # (n,) bool: special-group household (contract.SPECIAL_TAGS), linked first
    max_distance_m: float | None
    keep_bonus_m: float
    distance_fn: DistanceFn | None
    candidates: int

    @property
    def n_grids(self) -> int:
        """Number of grid ids (rows of ``borrow``)."""
        return self.borrow.shape[0]


@dataclass
class Solution:
    """What the solver fills in, per household and per member."""

    member_of: np.ndarray  # member index or -1
    has_member: np.ndarray  # household has any allowed member ignoring distance
    has_within: np.ndarray  # ... within max distance
    reachable: np.ndarray  # per member: households it may link
    stats: dict = field(default_factory=lambda: dict.fromkeys(STAT_KEYS, 0))
    seconds: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @classmethod
    def empty(cls, n_households: int, n_members: int) -> Solution:
        """Nothing linked yet: ``n_households`` rows, ``n_members`` member counters."""
        return cls(member_of=np.full(n_households, -1, dtype=np.int64),
                   has_member=np.zeros(n_households, dtype=bool),
                   has_within=np.zeros(n_households, dtype=bool),
                   reachable=np.zeros(n_members, dtype=np.int64))


@contextmanager
def timed(sol: Solution, stage: str):
    """Add the CPU time of the ``with`` body to ``sol.seconds[stage]`` (for the benchmark's breakdown)."""
    start = time.process_time()
    try:
        yield
    finally:
        sol.seconds[stage] += time.process_time() - start


def euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Straight-line metres between every row of ``a`` and of ``b`` (planar coordinates)."""
    return np.hypot(a[:, 0, None] - b[None, :, 0], a[:, 1, None] - b[None, :, 1])


def _square_borrow(borrow, n_grids: int) -> np.ndarray:
    """``borrow`` as an ``(n_grids, n_grids)`` bool matrix with a false diagonal."""
    if borrow is None:
        borrow = np.zeros((n_grids, n_grids), dtype=bool)
    borrow = np.array(borrow, dtype=bool)
    if borrow.shape[0] < n_grids:
        grown = np.zeros((n_grids, n_grids), dtype=bool)
        grown[: borrow.shape[0], : borrow.shape[1]] = borrow
        borrow = grown
    np.fill_diagonal(borrow, False)
    return borrow


# More than ten arguments on purpose: the arguments of solve_arrays, checked in one place.
def make_problem(h_xy, m_xy, h_grid, m_grid, m_min, m_max, *, borrow=None, prev=None,  # noqa: PLR0913
                 special=None, max_distance_m=None, keep_bonus_m=200.0, distance_fn=None, candidates=12) -> Problem:
    """Checked, typed arrays of one problem (arguments as in :func:`gridmap.linkage.solve_arrays`).

    Raises
    ------
    ValueError
        When a member's band is not ``0 <= min_links <= max_links``.
    """
    h_grid = np.asarray(h_grid, dtype=np.int64)
    m_grid = np.asarray(m_grid, dtype=np.int64)
    n, m = len(h_grid), len(m_grid)
    n_grids = int(max(h_grid.max(initial=-1), m_grid.max(initial=-1))) + 1
    prob = Problem(
        h_xy=np.asarray(h_xy, dtype=float).reshape(n, 2), m_xy=np.asarray(m_xy, dtype=float).reshape(m, 2),
        h_grid=h_grid, m_grid=m_grid,
        m_min=np.asarray(m_min, dtype=np.int64), m_max=np.asarray(m_max, dtype=np.int64),
        borrow=_square_borrow(borrow, n_grids),
        prev=np.full(n, -1, dtype=np.int64) if prev is None else np.asarray(prev, dtype=np.int64),
        special=np.zeros(n, dtype=bool) if special is None else np.asarray(special, dtype=bool).reshape(n),
        max_distance_m=max_distance_m, keep_bonus_m=float(keep_bonus_m), distance_fn=distance_fn,
        candidates=max(1, int(candidates)),
    )
    if np.any(prob.m_min > prob.m_max) or np.any(prob.m_min < 0):
        raise ValueError("every member needs 0 <= min_links <= max_links")
    return prob


def split_blocks(prob: Problem) -> list[tuple[np.ndarray, np.ndarray]]:
    """Independent blocks ``(households, members)``: components of "same grid or borrowing allowed".

    Members are in increasing index order inside a block (stable sort), which the block solvers
    use to map previous links by binary search. Blocks without households or without available
    members are left out (nothing to link there).
    """
    n_grids = prob.n_grids
    if n_grids == 0:
        return []
    g_a, g_b = np.nonzero(prob.borrow | prob.borrow.T)
    graph = coo_matrix((np.ones(len(g_a)), (g_a, g_b)), shape=(n_grids, n_grids))
    _, block_of_grid = connected_components(graph, directed=False)
    active = prob.m_max > 0
    h_block = np.where(prob.h_grid >= 0, block_of_grid[np.maximum(prob.h_grid, 0)], -1)
    m_block = np.where((prob.m_grid >= 0) & active, block_of_grid[np.maximum(prob.m_grid, 0)], -1)
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
    return blocks


def previous_local(prob: Problem, hs: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """Column (index into ``ms``) of every household's previous member in this block, -1 if none.

    ``ms`` is increasing (stable sort by block), so previous members map by binary search.
    """
    prev = prob.prev[hs]
    pos = np.minimum(np.searchsorted(ms, prev), len(ms) - 1)
    return np.where((prev >= 0) & (ms[pos] == prev), pos, -1).astype(np.int64)


def escalate_to_tiers(tiered: bool, load: np.ndarray, m_min: np.ndarray, sol: Solution) -> bool:
    """Whether a block, optimal at this stage, must be solved again with tier weights: only when it is
    not tiered yet and a member's minimum is still missed (counted in ``sol.stats``)."""
    if tiered or not np.any(load < m_min):
        return False
    sol.stats["tiered_blocks"] += 1
    return True


def tier_weights(n: int, m: int, dmax: int, bonus: int, any_cross: bool, n_special: int = 0) -> tuple[int, int, int]:
    """Tier weights ``(P, Q, W)`` of a block, each above the largest change of the tiers below that one
    improving step can make (package docstring).

    Why per step and not over all households: the difference of two flows is a circulation in the
    residual network of either, made of simple cycles each feasible on its own. A simple cycle
    visits each household once at most, between two of the other nodes (members, source, sink),
    so it flips at most ``L = 2·min(n, m + 2)`` household–member arcs, each worth at most
    ``P + dmax + bonus`` below the special tier; it passes the source once at most, so it links
    or unlinks at most one special household. If a flow were not lexicographically optimal, some
    cycle of its difference to the optimum would improve a higher tier by one unit; with each
    weight above what the lower tiers of that cycle can lose, the cycle also lowers the single
    cost, so a flow of least single cost is lexicographically optimal.

    ``P`` prices a cross-grid link (``> L·(dmax + bonus)``); ``Q`` credits a linked special-group
    household (``> L·(P + dmax + bonus)``; 0 when the block has no special household or only
    special ones, whose credit the linked tier already covers); ``W`` an unlinked household or
    unfilled minimum place (``> Q + L·(P + dmax + bonus)``). ``dmax`` and ``bonus`` are in
    centimetres. Raises ``RuntimeError`` when int64 could overflow.
    """
    arcs = 2 * min(n, m + 2)
    r_dist = arcs * (dmax + bonus) + 1
    P = r_dist if any_cross else 0
    r_lower = arcs * (P + dmax + bonus) + 1
    Q = r_lower if 0 < n_special < n else 0
    W = Q + r_lower + 1
    if W * (n + m + 2) >= SAFE_COST_SUM:
        raise RuntimeError(f"cost range too large for exact int64 arithmetic (block of {n} households)")
    return P, Q, W
