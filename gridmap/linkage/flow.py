"""The min-cost flow of one block (OR-Tools ``SimpleMinCostFlow``), exact on integer costs.

Nodes: source ``s = 0``, households ``1..n``, members ``n+1..n+m``, sink ``t = n+m+1``. Costs are
integers in centimetres (``problem.COST_SCALE``) plus the tier weights.
"""

from __future__ import annotations

import numpy as np
from ortools.graph.python import min_cost_flow


def _sink_arcs(n: int, m: int, m_min, m_max, W: int, tiered: bool):
    """Member → sink arcs ``(tails, caps, costs)`` and the extra bypass arc ``s → t`` (tiered only)."""
    s, t = 0, n + m + 1
    member_node = np.arange(m) + n + 1
    if not tiered:
        return member_node, m_max, np.zeros(m, np.int64), ([], [], [], [])
    has_min = m_min > 0
    has_extra = m_max > m_min
    tails = np.concatenate([member_node[has_min], member_node[has_extra]])
    caps = np.concatenate([m_min[has_min], (m_max - m_min)[has_extra]])
    costs = np.concatenate([np.full(has_min.sum(), -W, np.int64), np.zeros(has_extra.sum(), np.int64)])
    return tails, caps, costs, ([s], [t], [n], [W])


def solve_network(n, m, a_h, a_m, a_cost, m_min, m_max, W, tiered) -> np.ndarray:
    """Min-cost flow of one block; returns which household→member arcs carry flow.

    Parameters
    ----------
    n, m : int
        Households and members of the block.
    a_h, a_m, a_cost : int arrays
        The candidate arcs: household row, member column, cost (cm plus tiers).
    m_min, m_max : int arrays
        Members' bands.
    W : int
        Weight of the minimum tier (only used when ``tiered``).
    tiered : bool
        Minimum-part arcs priced ``-W`` and a bypass ``s → t`` priced ``W`` (package docstring).
        Otherwise one arc per member (capacity ``max_links``) and OR-Tools' maximum flow of least
        cost, which is the same optimum as the bypass priced at any large ``W``.

    Returns
    -------
    (len(a_h),) bool array
    """
    s, t = 0, n + m + 1
    sink_tails, sink_caps, sink_costs, bypass = _sink_arcs(n, m, m_min, m_max, W, tiered)
    tails = np.concatenate([np.zeros(n, np.int64), a_h + 1, sink_tails, bypass[0]]).astype(np.int64)
    heads = np.concatenate([np.arange(n) + 1, a_m + n + 1, np.full(len(sink_tails), t), bypass[1]]).astype(np.int64)
    caps = np.concatenate([np.ones(n, np.int64), np.ones(len(a_h), np.int64), sink_caps, bypass[2]]).astype(np.int64)
    costs = np.concatenate([np.zeros(n, np.int64), a_cost, sink_costs, bypass[3]]).astype(np.int64)
    smcf = min_cost_flow.SimpleMinCostFlow()
    arcs = smcf.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
    smcf.set_nodes_supplies(np.array([s, t]), np.array([n, -n]))
    status = smcf.solve() if tiered else smcf.solve_max_flow_with_min_cost()
    if status != smcf.OPTIMAL:
        raise RuntimeError(f"min-cost flow failed with status {status} (block of {n} households, {m} members)")
    return smcf.flows(arcs[n:n + len(a_h)]) > 0
