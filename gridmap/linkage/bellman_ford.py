"""Shortest-path potentials of a block's residual network: the two Bellman–Ford variants.

Both run on the same *contracted* graph. Distances are from a virtual root with 0-cost arcs to
every node, so ``π ≤ 0``. Households are contracted away: a linked household's only residual
in-arc comes from its member (cost ``-c``), an unlinked one's only from the source, so every path
through a household is an arc of a graph on ``{s, t, members}`` alone (nodes ``0 = s``, ``1 = t``,
``2 + j`` = member ``j``) — Bellman–Ford there is tiny and dense. The bypass ``s → t`` (cost ``W``
per unlinked household) is included in both stages. All arithmetic is exact int64 (costs in cm).

* :func:`arc_potentials` — the arcs are given as lists (the row-chunked path);
* :func:`dense_potentials` — the arcs are the entries of a dense cost matrix below ``NO_ARC``.
"""

from __future__ import annotations

import numpy as np

from gridmap.linkage.problem import NO_ARC

S, T = 0, 1


def _sink_residuals(mat, load, m_min, m_max, W: int, tiered: bool, n: int, n_linked: int) -> None:
    """Member ↔ t residual arcs (the cheaper of parallel arcs counts) and the bypass ``s ↔ t``."""
    if tiered:
        f_min = np.minimum(load, m_min)
        f_extra = load - f_min
        mat[2:, T] = np.where(f_min < m_min, -W, np.where(f_extra < m_max - m_min, 0, NO_ARC))
        mat[T, 2:] = np.where(f_extra > 0, 0, np.where(f_min > 0, W, NO_ARC))
    else:
        mat[2:, T] = np.where(load < m_max, 0, NO_ARC)
        mat[T, 2:] = np.where(load > 0, 0, NO_ARC)
    if n_linked > 0:
        mat[S, T] = min(mat[S, T], W)
    if n_linked < n:
        mat[T, S] = min(mat[T, S], -W)


def relax(pi: np.ndarray, mat: np.ndarray, max_rounds: int | None = None) -> np.ndarray | None:
    """Bellman–Ford on the dense matrix ``mat`` from ``pi``; ``None`` if it has not settled.

    Without ``max_rounds`` not settling means a negative cycle; with it, only that the rounds ran
    out (a result returned is still exact).
    """
    N = len(pi)
    scratch = np.empty((N, N), dtype=np.int64)
    relaxed = np.empty(N, dtype=np.int64)
    for _ in range(N + 1 if max_rounds is None else min(N + 1, max_rounds)):
        np.add(pi[:, None], mat, out=scratch)
        scratch.min(axis=0, out=relaxed)
        if not (relaxed < pi).any():
            return pi
        np.minimum(pi, relaxed, out=pi)
    return None


def _household_potentials(pi, member_of, c_link) -> np.ndarray:
    """A linked household's potential through its member, an unlinked one's through s (both ≤ 0)."""
    linked = member_of >= 0
    return np.where(linked, np.minimum(0, pi[np.maximum(member_of, 0) + 2] - c_link), min(0, int(pi[S])))


# More than ten arguments on purpose: the flat arrays of one block, as the worker processes receive them.
def arc_potentials(n, m, a_h, a_m, a_cost, flow, member_of, load, m_min, m_max, W, tiered):  # noqa: PLR0913
    """Potentials of the residual network of a block's (pruned) optimal flow, arcs given as lists.

    Returns
    -------
    (pi_h, pi_m) : int64 arrays

    Raises
    ------
    RuntimeError
        On a negative cycle (the flow was not optimal for these arcs).
    """
    linked = member_of >= 0
    c_link = np.zeros(n, dtype=np.int64)
    c_link[a_h[flow]] = a_cost[flow]
    free = ~flow
    fh, fm, fc = a_h[free], a_m[free], a_cost[free]
    tails = np.concatenate([np.where(linked[fh], member_of[fh] + 2, S), member_of[linked] + 2])
    heads = np.concatenate([fm + 2, np.full(linked.sum(), S)])
    weights = np.concatenate([fc - np.where(linked[fh], c_link[fh], 0), -c_link[linked]])
    mat = np.full((m + 2, m + 2), NO_ARC, dtype=np.int64)
    np.minimum.at(mat, (tails.astype(np.int64), heads.astype(np.int64)), weights.astype(np.int64))
    _sink_residuals(mat, load, m_min, m_max, W, tiered, n, int(linked.sum()))
    pi = np.zeros(m + 2, dtype=np.int64)
    # Root → household → member paths (a household's own potential is ≤ 0 through the root).
    if len(fm):
        np.minimum.at(pi, fm + 2, np.minimum(fc, 0))
    if relax(pi, mat) is None:
        raise RuntimeError("negative cycle in the residual network: the flow was not optimal")
    return _household_potentials(pi, member_of, c_link), pi[2:]


def _dense_household_arcs(cost, member_of, owned: bool):
    """Contracted arcs from the households of a dense block: ``(mat, c_link, col_min)``.

    Household rows are grouped by their tail in the contracted graph (own member, or s if
    unlinked) and reduced with segment minima instead of scattered updates.
    """
    n, m = cost.shape
    linked = member_of >= 0
    rows = np.arange(n)
    c_link = np.zeros(n, dtype=np.int64)
    c_link[linked] = cost[rows[linked], member_of[linked]]
    free = cost if owned else cost.copy()
    free[rows[linked], member_of[linked]] = NO_ARC  # an arc with flow has no forward residual
    col_min = free.min(axis=0)
    mat = np.full((m + 2, m + 2), NO_ARC, dtype=np.int64)
    grp = np.where(linked, member_of + 2, S)
    order = np.argsort(grp, kind="stable")
    g_sorted = grp[order]
    starts = np.concatenate(([0], np.flatnonzero(g_sorted[1:] != g_sorted[:-1]) + 1))
    heads = g_sorted[starts]
    free -= c_link[:, None]
    red = np.minimum.reduceat(free[order], starts, axis=0)
    mat[heads, 2:] = np.where(red >= NO_ARC // 2, NO_ARC, red)
    back = np.minimum.reduceat(-c_link[order], starts)
    lh = heads != S
    mat[heads[lh], S] = back[lh]  # member → s (undo a link)
    return mat, c_link, col_min


def dense_potentials(cost, member_of, load, m_min, m_max, W, tiered, start=None, max_rounds=None,
                     owned=False):
    """Potentials of a dense block: arcs are the entries of ``cost`` below ``NO_ARC``.

    Returns the same potentials as :func:`arc_potentials` as ``(pi_h, pi_m, pi)`` (``pi`` on
    ``s, t, members``), or ``None`` when the residual network has a negative cycle (the flow is
    then not optimal for these arcs).

    ``start``: potentials to start Bellman–Ford from instead of the root's; they must be lengths
    of paths of this graph (e.g. shortest paths of a subgraph), so the result is the same.
    ``max_rounds``: give up (``None``) after this many rounds; a result is still exact.
    ``owned``: ``cost`` is a scratch copy that may be overwritten.
    """
    n = cost.shape[0]
    mat, c_link, col_min = _dense_household_arcs(cost, member_of, owned)
    _sink_residuals(mat, load, m_min, m_max, W, tiered, n, int((member_of >= 0).sum()))
    pi = np.zeros(len(mat), dtype=np.int64)
    # Root → household → member paths (a household's own potential is ≤ 0 through the root).
    pi[2:] = np.minimum(col_min, 0)
    if start is not None:
        pi = np.minimum(pi, start)
    if relax(pi, mat, max_rounds) is None:
        return None
    return _household_potentials(pi, member_of, c_link), pi[2:], pi
