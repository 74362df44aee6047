"""One block solved on its dense ``households × members`` cost matrix (the common case).

By default (``problem.DENSE_SOLVER = "paths"``) each stage is one compiled shortest-path solve of
all arcs (:mod:`gridmap.linkage.transport`), certified by Bellman–Ford potentials of the full
residual network started from the solver's duals: no pruning, no re-solve.

With ``"pruned"``: the same algorithm and the same first pruned network as
:mod:`gridmap.linkage.chunked` (OR-Tools), on one dense matrix (no chunk bookkeeping), with two
additions that save solver work:

* when the potentials of the *pruned* residual network flag a left-out arc, Bellman–Ford is
  continued from them on the contracted graph of *all* arcs; if it settles, the flow has no
  negative cycle in the full residual network — it is optimal, the flag was a false alarm (the
  pruned potentials are one dual solution of many) and no re-solve is needed;
* a re-solve uses the flow's exact neighbourhood when that is smaller than the old candidates
  plus the flagged arcs (:func:`gridmap.linkage.certificate.next_candidates`).

Distances are metres (planar); costs int64 centimetres plus tier weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridmap.linkage import problem
from gridmap.linkage.bellman_ford import dense_potentials
from gridmap.linkage.certificate import dense_violations, next_candidates
from gridmap.linkage.flow import solve_network
from gridmap.linkage.problem import (
    COST_SCALE,
    Problem,
    Solution,
    euclidean,
    previous_local,
    tier_weights,
    timed,
)
from gridmap.linkage.transport import successive_shortest_paths


@dataclass
class _DensePairs:
    """Every household × member pair of a block: metres, and which pairs may be linked."""

    dist: np.ndarray  # (n, m) metres
    within: np.ndarray  # allowed and within the maximum distance
    cross: np.ndarray | None  # allowed only by borrowing; None for a block of one grid
    all_within: bool


def _pairs(prob: Problem, hs: np.ndarray, ms: np.ndarray, sol: Solution) -> _DensePairs:
    """Distances and allowed pairs of a block; records reachability in ``sol``."""
    dist = np.asarray((prob.distance_fn or euclidean)(prob.h_xy[hs], prob.m_xy[ms]), dtype=float)
    hg, mg = prob.h_grid[hs], prob.m_grid[ms]
    if bool((hg == hg[0]).all() and (mg == hg[0]).all()):  # one grid (the usual case): no pair crosses
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
    sol.has_within[hs] |= within.any(axis=1)
    sol.reachable[ms] += within.sum(axis=0)
    return _DensePairs(dist=dist, within=within, cross=cross, all_within=bool(within.all()))


def _first_candidates(prob: Problem, pairs: _DensePairs, any_cross: bool, prev_cell, m_max,
                      special: np.ndarray) -> np.ndarray:
    """Arcs of the first pruned solve: each household's k cheapest, each member's r cheapest, previous links.

    The ranking is a heuristic only (own grid before borrowed, then special-group households
    before ordinary ones on the member side, then distance − keep bonus); ties at a threshold all
    stay in. The certificate makes the result independent of it.
    """
    n, m = pairs.dist.shape
    key = pairs.dist.copy() if pairs.all_within else np.where(pairs.within, pairs.dist, np.inf)
    if any_cross and pairs.cross is not None:
        key += np.where(pairs.cross, 1e12, 0.0)
    key[prev_cell] -= prob.keep_bonus_m
    if special.any():  # a constant per row: changes only the member side, where scarce members serve them first
        key[special] -= 1e9
    k = min(prob.candidates, m)
    r = min(n, int(problem.MEMBER_SIDE * m_max.max()))
    if k < m:
        cand = key <= np.partition(key, k - 1, axis=1)[:, k - 1:k]
    else:
        cand = np.ones((n, m), dtype=bool)
    if 0 < r < n:  # member side: its r cheapest households (dense clusters otherwise need extra rounds)
        cand |= key <= np.partition(key, r - 1, axis=0)[r - 1:r]
    elif r >= n:
        cand[:] = True
    cand[prev_cell] = True  # a previous link is always a candidate: stability never depends on pruning
    if not pairs.all_within:
        cand &= pairs.within
    return cand


def _cost_matrix(pairs: _DensePairs, P: int, Q: int, bonus: int, prev_cell, special: np.ndarray) -> np.ndarray:
    """Integer arc costs: cm + ``P`` per cross-grid pair − ``Q`` per special household − keep bonus.

    ``NO_ARC`` where a pair may not be linked.
    """
    dist = pairs.dist if pairs.all_within else np.where(pairs.within, pairs.dist, 0.0)
    cost = np.rint(dist * COST_SCALE).astype(np.int64)
    if P and pairs.cross is not None:
        cost += P * pairs.cross.astype(np.int64)
    cost[prev_cell] -= bonus
    if Q:
        cost[special] -= Q
    if not pairs.all_within:
        cost[~pairs.within] = problem.NO_ARC
    return cost


def solve_dense_block(prob: Problem, hs: np.ndarray, ms: np.ndarray, sol: Solution) -> None:
    """Solve one block exactly on its dense cost matrix; writes ``sol.member_of[hs]``.

    Stage A (no minimum tier) then, only if a minimum is missed, stage B (tiered). By default each
    stage is one compiled shortest-path solve of all arcs, certified by its own duals
    (:mod:`gridmap.linkage.transport`); with ``problem.DENSE_SOLVER = "pruned"`` each stage is solved
    by OR-Tools on pruned arcs and re-solved on more until the certificate holds (package docstring).
    """
    with timed(sol, "pairs"):
        pairs = _pairs(prob, hs, ms, sol)
    n_full = int(pairs.within.sum())
    sol.stats["blocks"] += 1
    sol.stats["arcs_full"] += n_full
    if n_full == 0:
        return
    blk = _block(prob, pairs, hs, ms)
    if problem.DENSE_SOLVER == "paths":
        with timed(sol, "candidates"):
            cost = _cost_matrix(pairs, blk.P, blk.Q, blk.bonus, blk.prev_cell, blk.special)
        member_of = _solve_by_paths(cost, blk, n_full, sol)
    else:
        member_of = _solve_pruned(prob, pairs, blk, n_full, sol)
    linked = member_of >= 0
    sol.member_of[hs[linked]] = ms[member_of[linked]]


@dataclass
class _Block:
    """What both solvers of a dense block need: bands, previous links, tier weights (cm)."""

    m_min: np.ndarray
    m_max: np.ndarray
    prev_cell: tuple
    special: np.ndarray
    any_cross: bool
    bonus: int
    P: int
    Q: int
    W: int


def _block(prob: Problem, pairs: _DensePairs, hs: np.ndarray, ms: np.ndarray) -> _Block:
    """Bands, previous links and the tier weights of a dense block."""
    n, m = pairs.dist.shape
    prev_local = previous_local(prob, hs, ms)
    p_rows = np.flatnonzero(prev_local >= 0)
    any_cross = pairs.cross is not None and bool((pairs.cross & pairs.within).any())
    dmax_m = pairs.dist.max() if pairs.all_within else pairs.dist[pairs.within].max()
    bonus = round(prob.keep_bonus_m * COST_SCALE)
    special = prob.special[hs]
    P, Q, W = tier_weights(n, m, int(np.rint(dmax_m * COST_SCALE)), bonus, any_cross, int(special.sum()))
    return _Block(m_min=prob.m_min[ms], m_max=prob.m_max[ms], prev_cell=(p_rows, prev_local[p_rows]),
                  special=special, any_cross=any_cross, bonus=bonus, P=P, Q=Q, W=W)


def _solve_by_paths(cost: np.ndarray, blk: _Block, n_full: int, sol: Solution) -> np.ndarray:
    """Each stage: one shortest-path solve of all arcs, certified on the full residual network
    (Bellman–Ford potentials, :func:`gridmap.linkage.bellman_ford.dense_potentials`); ``member_of`` (columns)."""
    sol.stats["unpruned_blocks"] += 1
    w_free = _unlinked_price(cost, blk)
    order = np.argsort(cost.min(axis=1), kind="stable")  # nearest first: later paths move fewer households
    tiered = False
    while True:
        with timed(sol, "flow"):
            member_of, v, column_member = successive_shortest_paths(cost, blk.m_min, blk.m_max, blk.W, tiered, w_free,
                                                                    order)
        sol.stats["rounds"] += 1
        sol.stats["arcs_solved"] += n_full
        load = np.bincount(member_of[member_of >= 0], minlength=len(blk.m_max))
        with timed(sol, "certificate"):
            start = None if tiered else _start_potentials(cost, v, column_member, blk.W, w_free)
            if dense_potentials(cost, member_of, load, blk.m_min, blk.m_max, blk.W, tiered, start=start) is None:
                raise RuntimeError("negative cycle in the residual network: the flow was not optimal")
        if problem.escalate_to_tiers(tiered, load, blk.m_min, sol):
            tiered = True
            continue
        return member_of


def _start_potentials(cost: np.ndarray, v: np.ndarray, column_member: np.ndarray, W: int, w_free: int) -> np.ndarray:
    """Where Bellman–Ford starts the certificate of stage A (``s, t, members``): the solver's duals.

    With ``π(t) = 0`` and ``π(s) = −W`` (the bypass), a member's potential is its column's dual
    shifted by the "unlinked" column's reduced price ``w_free − v_free − W``; these are feasible for
    the full residual network when the flow is optimal, so the certificate settles in one round
    instead of about ten. The start changes the speed only (``bellman_ford.dense_potentials``);
    it is shifted below the root distances Bellman–Ford would otherwise start from, so it is used as is.
    """
    pi_m = np.zeros(cost.shape[1], dtype=np.int64)
    own = column_member >= 0
    shift = w_free - int(v[~own][0]) - W if (~own).any() else -W
    pi_m[column_member[own]] = v[own] + shift
    pi = np.concatenate(([-W, 0], pi_m))
    finite = cost[cost < problem.NO_ARC]
    return pi - int(pi.max()) - (int(finite.max()) - int(finite.min()) + 1)


def _unlinked_price(cost: np.ndarray, blk: _Block) -> int:
    """Cost of "unlinked" in the shortest-path solve: ``W``, or in a balanced block (every pair an
    arc, more households than places: the households left over are as many in any maximum flow) a
    price that leaves the right number of households nearest-member costlier than it, so that few
    paths have to move households again (speed only: any price gives the same optimum)."""
    places = int(blk.m_max.sum())
    if cost.shape[0] <= places or np.any(cost >= problem.NO_ARC):
        return blk.W
    nearest = cost.min(axis=1)
    return min(blk.W - 1, int(np.partition(nearest, places)[places]))


def _solve_pruned(prob: Problem, pairs: _DensePairs, blk: _Block, n_full: int, sol: Solution) -> np.ndarray:
    """Each stage: OR-Tools on pruned arcs, re-solved on more until certified; ``member_of`` (columns)."""
    n, m = pairs.dist.shape
    with timed(sol, "candidates"):
        cand = _first_candidates(prob, pairs, blk.any_cross, blk.prev_cell, blk.m_max, blk.special)
        cost = _cost_matrix(pairs, blk.P, blk.Q, blk.bonus, blk.prev_cell, blk.special)
    pruned = int(cand.sum()) < n_full
    if not pruned:
        sol.stats["unpruned_blocks"] += 1
    tiered, re_solves = False, 0
    while True:
        with timed(sol, "flow"):
            a_h, a_m = np.nonzero(cand)  # row-major: the same arc order as the chunked path
            flow = solve_network(n, m, a_h, a_m, cost[a_h, a_m], blk.m_min, blk.m_max, blk.W, tiered)
        sol.stats["rounds"] += 1
        sol.stats["arcs_solved"] += len(a_h)
        member_of = np.full(n, -1, dtype=np.int64)
        member_of[a_h[flow]] = a_m[flow]
        load = np.bincount(member_of[member_of >= 0], minlength=m)
        with timed(sol, "certificate"):
            failed = pruned and dense_violations(cost, cand, pairs.within, member_of, load, blk.m_min, blk.m_max,
                                                 blk.W, tiered)
        if failed:
            # Narrowing may shrink the set, so allow it only a few times per block: after that the
            # set only grows, which bounds the number of rounds.
            missing, rc = failed
            cand = next_candidates(pairs.within, cand, missing, rc, a_h[flow], a_m[flow],
                                   re_solves < problem.NARROW_ROUNDS, sol.stats)
            re_solves += 1
            continue
        if problem.escalate_to_tiers(tiered, load, blk.m_min, sol):
            tiered = True
            continue
        return member_of
