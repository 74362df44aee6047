"""The compiled shortest-path solver of dense blocks (gridmap.linkage.transport) against OR-Tools.

Each kernel answer must equal an unpruned OR-Tools solve of the same stage in objective, and pass
the LP-duality certificate (Bellman–Ford potentials of the full residual network). The whole
engine with it must equal the OR-Tools pruned path to the centimetre (the MILP comparisons of
test_linkage.py and test_linkage_priority.py run both solvers too).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gridmap.linkage import bellman_ford, dense, problem, solve_arrays
from gridmap.linkage import flow as flow_solver
from gridmap.linkage.transport import successive_shortest_paths


def _objective(cost, member_of, m_min, W, tiered):
    """What each stage minimises: (unlinked, cost) lexicographically, or the tiered single cost."""
    linked = np.flatnonzero(member_of >= 0)
    c = int(cost[linked, member_of[linked]].sum())
    load = np.bincount(member_of[linked], minlength=len(m_min))
    unlinked = len(member_of) - len(linked)
    if tiered:
        return (0, c - W * int(np.minimum(load, m_min).sum()) + W * unlinked)
    return (unlinked, c)


def _or_tools(cost, m_min, m_max, W, tiered):
    n, m = cost.shape
    a_h, a_m = np.nonzero(cost < problem.NO_ARC)
    flow = flow_solver.solve_network(n, m, a_h, a_m, cost[a_h, a_m], m_min, m_max, W, tiered)
    member_of = np.full(n, -1, dtype=np.int64)
    member_of[a_h[flow]] = a_m[flow]
    return member_of


def _random_block(rng, complete: bool):
    n, m = int(rng.integers(10, 60)), int(rng.integers(1, 9))
    cost = rng.integers(0, 60_000, (n, m)).astype(np.int64)
    cost[rng.random((n, m)) < 0.3] -= 30_000  # keep-bonus and special credits make some costs negative
    if not complete:
        cost[rng.random((n, m)) < 0.3] = problem.NO_ARC  # beyond max distance / not allowed
    m_min = rng.integers(0, 5, m).astype(np.int64)
    m_max = (m_min + rng.integers(0, 6, m)).astype(np.int64)
    m_max[m_max == 0] = 1  # members of a block are available
    W = 2 * min(n, m + 2) * (int(np.abs(cost[cost < problem.NO_ARC]).max(initial=0)) + 1) * 4 + 1
    return cost, m_min, m_max, W


def _check(cost, m_min, m_max, W, tiered, w_free):
    n = cost.shape[0]
    member_of, _, _ = successive_shortest_paths(cost, m_min, m_max, W, tiered, w_free, np.arange(n))
    load = np.bincount(member_of[member_of >= 0], minlength=len(m_min))
    assert np.all(load <= m_max)
    linked = np.flatnonzero(member_of >= 0)
    assert np.all(cost[linked, member_of[linked]] < problem.NO_ARC)
    best = _objective(cost, _or_tools(cost, m_min, m_max, W, tiered), m_min, W, tiered)
    assert _objective(cost, member_of, m_min, W, tiered) == best
    assert bellman_ford.dense_potentials(cost, member_of, load, m_min, m_max, W, tiered) is not None


@pytest.mark.parametrize("seed", range(12))
def test_kernel_equals_an_unpruned_flow(seed):
    rng = np.random.default_rng(2000 + seed)
    for complete, tiered in itertools.product((False, True), (False, True)):
        cost, m_min, m_max, W = _random_block(rng, complete)
        _check(cost, m_min, m_max, W, tiered, W)


@pytest.mark.parametrize("seed", range(8))
def test_balanced_block_any_unlinked_price_gives_the_optimum(seed):
    # Every pair an arc and more households than places: "unlinked" may cost anything below W.
    rng = np.random.default_rng(2100 + seed)
    cost, m_min, m_max, W = _random_block(rng, complete=True)
    m_max = np.minimum(m_max, max(1, cost.shape[0] // (2 * len(m_max))))
    m_min = np.minimum(m_min, m_max)
    assert cost.shape[0] > m_max.sum()
    for w_free in (-10 ** 6, 0, int(np.median(cost)), 10 ** 6):
        _check(cost, m_min, m_max, W, False, w_free)


def _cm_objective(sol, h_xy, m_xy):
    linked = np.flatnonzero(sol.member_of >= 0)
    d = np.hypot(*(h_xy[linked] - m_xy[sol.member_of[linked]]).T)
    return len(linked), int(np.rint(d * problem.COST_SCALE).sum())


def test_engine_equals_the_pruned_or_tools_path_on_city_sized_grids(monkeypatch):
    # Grids of ~400 households and ~8 % members of 5–10 places: balanced blocks, as in a city;
    # and one small grid with more minimum places than households (stage B, not balanced).
    rng = np.random.default_rng(7)
    sizes = np.append(rng.integers(300, 450, 6), 30)
    h_xy = np.vstack([g * 2000.0 + rng.uniform(0, 800, (k, 2)) for g, k in enumerate(sizes)])
    h_grid = np.repeat(np.arange(7), sizes)
    m_grid = np.repeat(np.arange(7), np.append((sizes[:6] * 0.08).astype(int), 8))
    m_xy = m_grid[:, None] * 2000.0 + rng.uniform(0, 800, (len(m_grid), 2))
    m_min, m_max = np.full(len(m_grid), 5), np.full(len(m_grid), 10)
    prices = []
    real_price = dense._unlinked_price
    monkeypatch.setattr(dense, "_unlinked_price", lambda cost, blk: prices.append(real_price(cost, blk)) or prices[-1])
    paths = solve_arrays(h_xy, m_xy, h_grid, m_grid, m_min, m_max)
    assert len(prices) == 7 and paths.stats["tiered_blocks"] == 1
    assert sum(0 < p < 10 ** 6 for p in prices) == 6  # the balanced blocks: a price in cm, not W
    monkeypatch.setattr(problem, "DENSE_SOLVER", "pruned")
    pruned = solve_arrays(h_xy, m_xy, h_grid, m_grid, m_min, m_max)
    assert _cm_objective(paths, h_xy, m_xy) == _cm_objective(pruned, h_xy, m_xy)
    assert paths.stats["rounds"] == paths.stats["blocks"] + 1  # one solve per stage, never a re-solve
    assert pruned.stats["rounds"] > pruned.stats["blocks"] + 1
