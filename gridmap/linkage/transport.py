"""One dense block solved by successive shortest paths, compiled (numba): a primal flow *and* its duals.

OR-Tools' cost-scaling solver costs ~1.3 ms for a block of 400 households and 30 members and tells
nothing about duals, so the block had to be pruned, solved, certified by Bellman–Ford and sometimes
re-solved. Here the block's whole dense cost matrix is solved at once by successive shortest paths,
which keeps node potentials as it goes: the answer arrives with a dual solution, and the LP-duality
certificate (:func:`gridmap.linkage.bellman_ford.dense_potentials` on *all* arcs, started from those
duals) proves it optimal for the full block, usually in one Bellman–Ford round.

The block's min-cost flow (package docstring) is the same problem as a *transportation problem*:
every household goes to exactly one column — a member's minimum part (cost ``c(h, m) − W``,
capacity ``min_links``; tiered stage only), its other places (cost ``c(h, m)``), or "unlinked"
(cost ``W``, the bypass). Households are added one at a time; each is placed by a shortest
augmenting path over the columns (Dijkstra on reduced costs ``c − u − v``, Hungarian style: a full
column is passed through by moving one of its households to another column), and the column
potentials ``v`` are updated so reduced costs stay non-negative. After the last household the
placement is a least-cost one — with ``W`` above every path cost, the maximum flow of least cost
that the OR-Tools stage computes. Distances are centimetres (int64) plus the tier weights.

The certificate (``dense._solve_by_paths``) does not trust this: it builds the potentials of the
full residual network by Bellman–Ford, started from these duals (one round when they are right).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gridmap.linkage.problem import NO_ARC



#: "Not reached" in the searches (far above any path length, far below int64 overflow).
_INF = np.int64(2 ** 62)


@njit(cache=True)
def _columns(cost, m_min, m_max, W, tiered, w_free):  # pragma: no cover - compiled
    """The transportation problem's columns: ``(costs (n, L), capacities (L,), member (L,) or -1)``.

    A member's minimum part (cost ``c − W``, capacity ``min_links``; tiered stage only), its other
    places (cost ``c``), and last "unlinked" (cost ``w_free``, room for every household, or in a
    balanced block for exactly those left over). ``_INF`` where there is no arc.
    """
    n, m = cost.shape
    caps = np.zeros(2 * m + 1, np.int64)
    for j in range(m):
        lo = m_min[j] if tiered else 0
        caps[j], caps[m + j] = lo, m_max[j] - lo
    caps[2 * m] = n - m_max.sum() if w_free < W else n
    live = np.flatnonzero(caps > 0)
    cols = np.empty((n, len(live)), np.int64)
    for h in range(n):
        for k in range(len(live)):
            j = live[k]
            c = cost[h, j % m] if j < 2 * m else w_free
            if j < 2 * m and c >= NO_ARC:
                cols[h, k] = _INF
            else:
                cols[h, k] = c - W if j < m else c
    member = np.where(live < 2 * m, live % m, -1)
    return cols, caps[live], member


@njit(cache=True)
def _shortest_path(r, cols, cap, count, slots, off, v, d, pred, scanned):  # pragma: no cover - compiled
    """Dijkstra from household ``r`` over the columns; returns the first column with room (the sink)."""
    L = len(cap)
    for j in range(L):
        d[j] = cols[r, j] - v[j]
        pred[j] = r
        scanned[j] = False
    while True:
        j, dj = -1, _INF
        for k in range(L):
            if not scanned[k] and d[k] < dj:
                j, dj = k, d[k]
        if j < 0 or count[j] < cap[j]:
            return j
        scanned[j] = True
        for s in range(off[j], off[j] + count[j]):
            i = slots[s]
            base = dj - cols[i, j] + v[j]
            for k in range(L):
                c = cols[i, k]
                if c < _INF and not scanned[k] and base + c - v[k] < d[k]:
                    d[k] = base + c - v[k]
                    pred[k] = i


@njit(cache=True)
def _move(i, j, count, slots, off, pos, col_of):  # pragma: no cover - compiled
    """Household ``i`` leaves its column (swap-remove) and takes a slot of column ``j``."""
    old = col_of[i]
    if old >= 0:
        last = slots[off[old] + count[old] - 1]
        slots[pos[i]] = last
        pos[last] = pos[i]
        count[old] -= 1
    slots[off[j] + count[j]] = i
    pos[i] = off[j] + count[j]
    count[j] += 1
    col_of[i] = j


@njit(cache=True)
def successive_shortest_paths(cost, m_min, m_max, W, tiered, w_free, order):  # pragma: no cover - compiled
    """Least-cost flow of a dense block, one household at a time: ``(member_of, v, member of column)``.

    ``cost``: (n, m) int64, cm plus tiers, ``NO_ARC`` where no arc. The columns (:func:`_columns`):
    the members' minimum parts (cost ``c − W``; tiered stage only), their other places, "unlinked"
    at ``w_free``, which is ``W`` (room for every household) unless the block is *balanced*
    (``w_free < W``: every pair an arc and more households than places, so any assignment filling
    every place is a maximum flow and the households left over all pay the same ``w_free`` — any
    value gives the same optimum; room for exactly those). ``v``: the columns' potentials (duals).
    ``order``: the households in the order they are added (speed only).
    """
    n = cost.shape[0]
    cols, cap, member = _columns(cost, m_min, m_max, W, tiered, w_free)
    L = len(cap)
    off = np.zeros(L, np.int64)
    for j in range(1, L):
        off[j] = off[j - 1] + cap[j - 1]
    slots = np.empty(off[-1] + cap[-1], np.int64)
    count = np.zeros(L, np.int64)
    pos = np.full(n, -1, np.int64)
    col_of = np.full(n, -1, np.int64)
    v = np.zeros(L, np.int64)
    d = np.empty(L, np.int64)
    pred = np.empty(L, np.int64)
    scanned = np.zeros(L, np.bool_)
    for r in order:
        t = _shortest_path(r, cols, cap, count, slots, off, v, d, pred, scanned)
        for j in range(L):
            if scanned[j]:
                v[j] += d[j] - d[t]
        while True:
            i = pred[t]
            nxt = col_of[i]
            _move(i, t, count, slots, off, pos, col_of)
            if i == r:
                break
            t = nxt
    member_of = np.empty(n, np.int64)
    for h in range(n):
        member_of[h] = member[col_of[h]]
    return member_of, v, member
