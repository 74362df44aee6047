"""The LP-duality certificate: is a block's pruned optimum optimal for all of its arcs?

With potentials ``π`` of the residual network of the pruned flow (``bellman_ford``), the flow is
optimal for the full block iff every left-out arc ``h → m`` has a non-negative reduced cost
``c(h, m) + π(h) − π(m) ≥ 0`` (a left-out arc carries no flow: this is its complementary-slackness
condition). When some arc violates, the potentials may still be repaired into potentials of the
full residual network (no negative cycle: optimal after all); otherwise the block is re-solved on
the arcs :func:`next_candidates` picks. Costs are int64 centimetres plus tier weights.
"""

from __future__ import annotations

import numpy as np

from gridmap.linkage import problem
from gridmap.linkage.bellman_ford import dense_potentials
from gridmap.linkage.problem import SAFE_COST_SUM


def dense_violations(cost, cand, within, member_of, load, m_min, m_max, W, tiered):
    """Check a dense block's flow on candidates ``cand`` against all arcs ``within``.

    Returns
    -------
    None, or (missing, rc)
        ``None`` when the flow is certified optimal for the whole block; otherwise the left-out
        arcs priced negative (bool matrix) and the reduced costs ``rc`` under the pruned potentials.

    Raises
    ------
    RuntimeError
        When the pruned residual network has a negative cycle (the solver's flow was not optimal).
    """
    pot = dense_potentials(np.where(cand, cost, problem.NO_ARC), member_of, load, m_min, m_max, W, tiered,
                           owned=True)
    if pot is None:
        raise RuntimeError("negative cycle in the residual network: the flow was not optimal")
    pi_h, pi_m, pi = pot
    rc = cost + pi_h[:, None] - pi_m[None, :]  # reduced costs; |π| < W·nodes keeps int64 exact
    missing = within & ~cand & (rc < 0)
    if not missing.any():
        return None
    # A left-out arc priced negative by the pruned potentials may still be a false alarm (they
    # are one dual solution of many): try to repair them into potentials of the full residual
    # network, starting from the pruned ones. Success is the optimality certificate itself.
    if dense_potentials(cost, member_of, load, m_min, m_max, W, tiered, start=pi,
                        max_rounds=problem.REPAIR_ROUNDS) is not None:
        return None
    return missing, rc


def chunk_violations(blk, pi_h: np.ndarray, pi_m: np.ndarray, member_of: np.ndarray) -> np.ndarray:
    """Arcs without flow (as ``h * m + m_idx``) of a row-chunked block whose reduced cost is negative.

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


def next_candidates(within, cand, missing, rc, f_h, f_m, narrow, stats) -> np.ndarray:
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
    if not narrow or min(row_max.sum(dtype=float), col_max.sum(dtype=float)) >= SAFE_COST_SUM:
        return widened  # (a bound that large would keep nearly every arc anyway)
    # An arc h → m on such a cycle already uses h's exit and m's entry: leave their own terms out.
    bound = np.minimum((row_max.sum() - row_max)[:, None], (col_max.sum() - col_max)[None, :])
    near = within & (rc < bound)
    near[f_h, f_m] = True
    if int(near.sum()) < int(widened.sum()):
        stats["narrowed_rounds"] += 1
        return near
    return widened


