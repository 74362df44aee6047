"""The array-level engine: decompose into independent blocks and solve each one exactly."""

from __future__ import annotations

import numpy as np

from gridmap.linkage import problem
from gridmap.linkage.chunked import solve_chunked_block
from gridmap.linkage.dense import solve_dense_block
from gridmap.linkage.parallel import solve_blocks_in_pool
from gridmap.linkage.problem import Problem, Solution, make_problem, split_blocks, timed


def solve_block(prob: Problem, hs: np.ndarray, ms: np.ndarray, sol: Solution) -> None:
    """Solve one block exactly: dense arrays when its cost matrix is small, row chunks otherwise."""
    if len(hs) * len(ms) <= problem.CHUNK_PAIRS:
        solve_dense_block(prob, hs, ms, sol)
    else:
        solve_chunked_block(prob, hs, ms, sol)


# More than ten arguments on purpose: the engine's arrays and the same options as link_households.
def solve_arrays(h_xy, m_xy, h_grid, m_grid, m_min, m_max, *, borrow=None, prev=None,  # noqa: PLR0913
                 special=None, max_distance_m=None, keep_bonus_m=200.0, distance_fn=None, candidates=12,
                 n_jobs: int = 1) -> Solution:
    """Exact linkage on arrays (the engine behind :func:`gridmap.linkage.link_households`).

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
    special : (n,) bool array, optional
        Special-group households (``gridmap.contract.SPECIAL_TAGS``): as many of them as possible
        are linked, before any ordinary household that the same members could serve.
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
    Solution
        ``member_of`` (member index or -1 per household), reachability flags and solver stats.
    """
    prob = make_problem(h_xy, m_xy, h_grid, m_grid, m_min, m_max, borrow=borrow, prev=prev, special=special,
                        max_distance_m=max_distance_m, keep_bonus_m=keep_bonus_m,
                        distance_fn=distance_fn, candidates=candidates)
    sol = Solution.empty(len(prob.h_grid), len(prob.m_grid))
    with timed(sol, "blocks"):
        blocks = split_blocks(prob)
    if n_jobs > 1 and len(blocks) > 1:
        solve_blocks_in_pool(prob, blocks, sol, n_jobs)
        return sol
    for hs, ms in blocks:
        solve_block(prob, hs, ms, sol)
    return sol
