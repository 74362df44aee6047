"""Blocks solved in a pool of forked worker processes (blocks are independent: same answer)."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np

from gridmap.linkage.problem import Problem, Solution

_WORKER_PROBLEM: Problem | None = None


def _init_worker(prob: Problem) -> None:
    global _WORKER_PROBLEM
    _WORKER_PROBLEM = prob


def _solve_batch(blocks):
    """Solve some blocks in a worker; returns only the rows they touched."""
    from gridmap.linkage.solve import solve_block

    prob = _WORKER_PROBLEM
    sol = Solution.empty(len(prob.h_grid), len(prob.m_grid))
    for hs, ms in blocks:
        solve_block(prob, hs, ms, sol)
    h_idx = np.concatenate([hs for hs, _ in blocks])
    m_idx = np.concatenate([ms for _, ms in blocks])
    return (h_idx, m_idx, sol.member_of[h_idx], sol.has_member[h_idx], sol.has_within[h_idx],
            sol.reachable[m_idx], sol.stats, sol.seconds)


def solve_blocks_in_pool(prob: Problem, blocks: list, sol: Solution, n_jobs: int) -> None:
    """Solve ``blocks`` on ``n_jobs`` forked workers, writing their rows and stats into ``sol``.

    Blocks are dealt round-robin into ``4 × n_jobs`` batches so that a few large blocks do not
    leave a worker idle at the end.
    """
    batches = [blocks[i::4 * n_jobs] for i in range(min(len(blocks), 4 * n_jobs))]
    with mp.get_context("fork").Pool(n_jobs, initializer=_init_worker, initargs=(prob,)) as pool:
        for h_idx, m_idx, member_of, has_member, has_within, reachable, stats, seconds in pool.imap_unordered(
                _solve_batch, batches):
            sol.member_of[h_idx] = member_of
            sol.has_member[h_idx] = has_member
            sol.has_within[h_idx] = has_within
            sol.reachable[m_idx] = reachable
            for key, value in stats.items():
                sol.stats[key] += value
            for stage, secs in seconds.items():
                sol.seconds[stage] += secs
