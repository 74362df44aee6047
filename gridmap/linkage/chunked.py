"""One block too large for a dense cost matrix (e.g. inputs without grid codes), in row chunks.

Same algorithm as :mod:`gridmap.linkage.dense`: a pruned first network, the LP-duality
certificate on every left-out arc, violating arcs added until it holds. Distances are metres
(planar); costs int64 centimetres plus tier weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gridmap.linkage import problem
from gridmap.linkage.bellman_ford import arc_potentials
from gridmap.linkage.certificate import chunk_violations
from gridmap.linkage.flow import solve_network
from gridmap.linkage.problem import (
    COST_SCALE,
    Problem,
    Solution,
    euclidean,
    previous_local,
    tier_weights,
)


class ChunkedBlock:
    """Cost rows of one block, computed in row chunks (cached when the block is small)."""

    def __init__(self, prob: Problem, hs: np.ndarray, ms: np.ndarray):
        self.prob, self.hs, self.ms = prob, hs, ms
        self.prev_local = previous_local(prob, hs, ms)
        self.rows_per_chunk = max(1, problem.CHUNK_PAIRS // max(1, len(ms)))
        self.cache: list | None = [] if len(hs) * len(ms) <= problem.CHUNK_PAIRS else None
        self.cost_cache: dict[int, np.ndarray] = {}
        self.bonus = round(prob.keep_bonus_m * COST_SCALE)
        self.special = prob.special[hs]
        self.P = 0  # cross-grid tier weight, set once Dmax is known
        self.Q = 0  # special-group credit, set with P

    def chunks(self):
        """Yield ``(rows, dist, allowed, within, cross)`` for row ranges of the block (metres)."""
        if self.cache:
            yield from self.cache
            return
        prob, hs, ms = self.prob, self.hs, self.ms
        fn = prob.distance_fn or euclidean
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
        """Integer arc costs (cm + cross tier − special credit − keep bonus) of ``rows`` × all members; ``NO_ARC`` if none."""
        key = int(rows[0])
        if self.cache is not None and key in self.cost_cache:
            return self.cost_cache[key]
        c = np.rint(np.where(within, dist, 0.0) * COST_SCALE).astype(np.int64)
        if self.P:
            c += self.P * cross.astype(np.int64)
        has_prev = self.prev_local[rows] >= 0
        c[np.flatnonzero(has_prev), self.prev_local[rows][has_prev]] -= self.bonus
        if self.Q:
            c[self.special[rows]] -= self.Q
        c[~within] = problem.NO_ARC
        if self.cache is not None:
            self.cost_cache[key] = c
        return c

    def arc_costs(self, a_h: np.ndarray, a_m: np.ndarray) -> np.ndarray:
        """Costs of the arcs ``(a_h, a_m)`` (block rows and columns)."""
        out = np.empty(len(a_h), dtype=np.int64)
        for rows, dist, _, within, cross in self.chunks():
            sel = np.flatnonzero((a_h >= rows[0]) & (a_h <= rows[-1]))
            out[sel] = self.cost(rows, dist, within, cross)[a_h[sel] - rows[0], a_m[sel]]
        return out


@dataclass
class _Scan:
    """What one pass over the chunks collects: candidate arcs and the ranges the tiers need."""

    arcs: list = field(default_factory=list)  # arrays of h * m + m_idx
    dmax: int = 0  # longest allowed arc, cm
    any_cross: bool = False
    n_full: int = 0


def _chunk_candidates(blk: ChunkedBlock, rows, dist, within, cross, k: int, r: int) -> np.ndarray:
    """Candidate arcs (``h * m + m_idx``) of one chunk: household side, member side, previous links."""
    m = len(blk.ms)
    # Candidate ranking (heuristic only): own grid before borrowed, special-group households first
    # on the member side, then distance − keep bonus.
    key = np.where(within, dist + np.where(cross, 1e12, 0.0) - np.where(blk.special[rows], 1e9, 0.0)[:, None], np.inf)
    prev_cols = blk.prev_local[rows]
    has_prev = prev_cols >= 0
    key[np.flatnonzero(has_prev), prev_cols[has_prev]] -= blk.prob.keep_bonus_m
    top = np.argpartition(key, k - 1, axis=1)[:, :k] if k < m else np.broadcast_to(np.arange(m), (len(rows), m))
    found = [rows[:, None] * m + top]
    rr = min(r, len(rows))
    if rr > 0:  # member side: its r cheapest households (dense clusters otherwise need extra rounds)
        top_h = (np.argpartition(key, rr - 1, axis=0)[:rr] if rr < len(rows)
                 else np.broadcast_to(np.arange(len(rows))[:, None], (len(rows), m)))
        found.append(rows[top_h] * m + np.arange(m)[None, :])
    # A previous link is always a candidate, so stability never depends on pruning.
    found.append(rows[has_prev] * m + prev_cols[has_prev])
    hm_chunk = np.concatenate([a.ravel() for a in found])
    return hm_chunk[within[hm_chunk // m - rows[0], hm_chunk % m]]


def _scan(blk: ChunkedBlock, sol: Solution) -> _Scan:
    """One pass over the chunks: reachability into ``sol``, first candidates, ranges of the tiers."""
    prob, hs, ms = blk.prob, blk.hs, blk.ms
    k = min(prob.candidates, len(ms))
    r = min(len(hs), int(problem.MEMBER_SIDE * prob.m_max[ms].max()))  # member side: a multiple of the capacity
    scan = _Scan()
    for rows, dist, allowed, within, cross in blk.chunks():
        sol.has_member[hs[rows]] |= allowed.any(axis=1)
        sol.has_within[hs[rows]] |= within.any(axis=1)
        sol.reachable[ms] += within.sum(axis=0)
        scan.n_full += int(within.sum())
        if not within.any():
            continue
        scan.dmax = max(scan.dmax, int(np.rint(dist[within].max() * COST_SCALE)))
        scan.any_cross |= bool((cross & within).any())
        scan.arcs.append(_chunk_candidates(blk, rows, dist, within, cross, k, r))
    return scan


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """``np.unique`` for int arrays, without its extra work."""
    a = np.sort(a)
    return a[np.r_[True, a[1:] != a[:-1]]] if len(a) else a


def solve_chunked_block(prob: Problem, hs: np.ndarray, ms: np.ndarray, sol: Solution) -> None:
    """Solve one block exactly in row chunks; writes ``sol.member_of[hs]``.

    Stage A ignores the minimum tier (max flow, then least cost: no big weights, faster). If its
    certified optimum already meets every minimum it is also optimal for the tiered objective (it
    has the largest possible filled minimum and the least cost among maximum flows); otherwise
    stage B solves the full tiered network.
    """
    blk = ChunkedBlock(prob, hs, ms)
    n, m = len(hs), len(ms)
    m_min, m_max = prob.m_min[ms], prob.m_max[ms]
    scan = _scan(blk, sol)
    sol.stats["blocks"] += 1
    sol.stats["arcs_full"] += scan.n_full
    if scan.n_full == 0:
        return
    blk.P, blk.Q, W = tier_weights(n, m, scan.dmax, blk.bonus, scan.any_cross, int(blk.special.sum()))
    hm = sorted_unique(np.concatenate(scan.arcs))
    pruned = len(hm) < scan.n_full
    if not pruned:
        sol.stats["unpruned_blocks"] += 1
    tiered = False
    while True:
        a_h, a_m = hm // m, hm % m
        a_cost = blk.arc_costs(a_h, a_m)
        flow = solve_network(n, m, a_h, a_m, a_cost, m_min, m_max, W, tiered)
        sol.stats["rounds"] += 1
        sol.stats["arcs_solved"] += len(hm)
        member_of = np.full(n, -1, dtype=np.int64)
        member_of[a_h[flow]] = a_m[flow]
        load = np.bincount(member_of[member_of >= 0], minlength=m)
        if pruned:
            pi_h, pi_m = arc_potentials(n, m, a_h, a_m, a_cost, flow, member_of, load, m_min, m_max, W, tiered)
            missing = chunk_violations(blk, pi_h, pi_m, member_of)
            if len(missing):
                hm = sorted_unique(np.concatenate([hm, missing]))
                continue
        if problem.escalate_to_tiers(tiered, load, m_min, sol):
            tiered = True
            continue
        break
    sol.member_of[hs[member_of >= 0]] = ms[member_of[member_of >= 0]]
