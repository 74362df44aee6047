"""Household–member linkage (包片联户): every household gets one party member, 5–10 each, optimally.

The policy (seed 001, 每名党员固定联系5-10户群众) asks that every household has a member who visits it
and that each member looks after between ``min_links`` and ``max_links`` households. By default a
household is linked only to a member of its own grid (包片 = by patch).

What "optimal" means here (the objective, in strict priority order)
-------------------------------------------------------------------
1. **Most households linked.**
2. **Smallest total shortfall below the members' minimums** — ``sum(max(0, min_links - load))``.
   The minimum is therefore a *hard* lower bound whenever any assignment can meet it, and a soft
   one otherwise: a member who can reach only 3 households still links those 3 and is reported
   ``below minimum`` (a street office would rather have 3 households visited than none), and when
   a grid has more members than households allow, households are spread so that as few members as
   possible fall short, rather than leaving some members idle. Priorities 1 and 2 never conflict:
   an augmenting path of the flow network below never lowers any member's load, so a flow with
   the largest filled minimum can always be augmented to a maximum flow without losing any of it.
3. **Most special-group households linked** (独居老人, 残疾人, 低保 … — ``gridmap.contract.SPECIAL_TAGS``):
   a special household is never left unlinked while an ordinary one is linked to a member who
   could serve it instead. Priorities 1–3 never conflict either, so this is the same optimum as
   putting the special tier first: in the bipartite graph of households and member places (the
   first ``min_links`` places of a member being its minimum part), take one matching ``M1`` with
   the most special households and most households linked, and one ``M2`` filling the most
   minimum places; by the Mendelsohn–Dulmage theorem some matching covers both the households of
   ``M1`` and the places of ``M2``, so it is best on all three at once. (Tested against a MILP
   that optimises the special tier first.)
4. **Fewest cross-grid links** (only when ``allow_cross_grid``): borrowing from a neighbouring grid
   is used only when it links more households or fills more minimums, never merely because a
   member across the border is a few metres closer.
5. **Smallest total walking distance** in metres (straight line in the local UTM projection of
   ``gridmap.metric``, or the caller's ``distance_fn``), minus ``keep_bonus_m`` for every previous
   link that is kept (stability: a link changes only if that saves more than the bonus).

Why the result is exactly optimal
---------------------------------
The problem is a min-cost flow: source → household (capacity 1) → member (capacity 1, cost =
distance) → sink by two parallel arcs, the *minimum part* (capacity ``min_links``, cost ``-W``)
and the *extra part* (capacity ``max_links - min_links``, cost 0), plus a bypass source → sink
(cost ``W`` per unlinked household). This is the standard lower-bound transformation with the
lower bound priced instead of imposed, which keeps the problem feasible when a minimum cannot be
met. A special household's arcs are credited ``-Q``. Costs are integers (centimetres); each tier
weight is larger than what the lower tiers can change along one simple cycle of the residual
network (at most ``L = 2·min(n, m + 2)`` household–member arcs flipped, at most one special
household linked or unlinked): ``P > L·(Dmax + bonus)``, ``Q > L·(P + Dmax + bonus)``,
``W > Q + L·(P + Dmax + bonus)``. The difference between any flow and an optimal one splits into
such cycles, each feasible on its own, so a flow of least single cost is lexicographically optimal
(``problem.tier_weights`` gives the argument; the weights grow with the members of a block, not
with its households, which keeps large blocks inside exact int64 arithmetic). Network-flow LPs have integral
optimal vertices and OR-Tools ``SimpleMinCostFlow`` solves them exactly.

Decomposition. Households can only be linked inside their grid (or, with ``allow_cross_grid``,
from a short grid to a neighbouring grid with spare capacity), so the candidate graph splits into
independent blocks — one per grid, or a few grids joined by borrowing — and the sum of the blocks'
optima is the optimum of the whole.

Two stages per block. Stage A solves without the minimum tier (the maximum flow of least
cost, special credit included: no W, faster). If its certified optimum meets every member's minimum it is also
optimal for the full objective (it has the largest possible filled minimum, and the least cost
among all maximum flows); otherwise stage B solves the tiered network above.

Solving a block without pruning (the default for blocks that fit a dense matrix). The block's
whole cost matrix is solved by successive shortest paths in compiled code (``transport``, numba):
households are added one at a time, each by a shortest augmenting path over the members' places
(and "unlinked"), which keeps dual potentials as it goes, so there is no pruning and no re-solve.
The answer is then certified exactly like a pruned one below: Bellman–Ford potentials of the
*full* residual network (``bellman_ford.dense_potentials`` on every arc) must exist, i.e. no
negative cycle — LP duality on the whole block. In a *balanced* block (every pair an arc, more
households than places: the usual city grid) every maximum flow fills every place and leaves the
same number of households unlinked, so "unlinked" is priced near the marginal household's distance
instead of ``W`` (any price gives the same optimum; this one keeps the augmenting paths short).
For a block of ~400 households and ~30 members this is ~0.3 ms against ~1.3 ms for one OR-Tools
solve of its pruned arcs (``bench/linkage.py``). ``problem.DENSE_SOLVER = "pruned"`` selects the
OR-Tools path below instead (the tests run both against a MILP).

Safe candidate pruning. Each block is first solved on a candidate subset of its arcs: every
household's ``candidates`` nearest members, every member's ``3 × max_links`` nearest households,
and every previous link. The optimality of that flow for the *full* block is then checked, not
assumed: shortest-path potentials ``π`` are computed on the residual network of the pruned flow
(Bellman–Ford; there is no negative cycle because that flow is optimal for the pruned network —
households are contracted away, so this runs on a dense graph of the members alone), and by LP
duality the flow is optimal for the full network iff every left-out arc ``h → m`` has
non-negative reduced cost ``c(h, m) + π(h) - π(m) ≥ 0`` (a left-out arc carries no flow, so
this is its complementary-slackness condition). When some arc violates, Bellman–Ford is first
continued from ``π`` on the contracted residual graph of *all* arcs: if it settles, those are
feasible potentials of the full residual network — no negative cycle, so the flow is optimal
after all (``π`` was just one dual solution of many) and no re-solve is needed. Otherwise the
violating arcs are added and the block is re-solved, until the certificate holds. (A re-solve
may instead use the flow's exact neighbourhood — its own arcs and all arcs of reduced cost below
a bound on the negative cycles that can still improve it — when that set is smaller; it
contains an optimal solution, see ``certificate.next_candidates``.) The answer is therefore the exact
optimum of the unpruned problem; the candidate numbers only change the speed.

Rounding: distances enter the solver in whole centimetres, so the total distance is optimal to
within 1 cm per link of the true real-valued optimum.

The parts, one module each
--------------------------
``problem``       the arrays of one problem, the solution being filled in, blocks, tier weights
``flow``          the min-cost flow of one block (OR-Tools ``SimpleMinCostFlow``)
``transport``     one dense block by compiled successive shortest paths (numba)
``bellman_ford``  potentials of a residual network: on arc lists and on a dense cost matrix
``certificate``   the LP-duality check of a pruned optimum and the arcs of the next re-solve
``dense``         one block on its dense cost matrix (the usual case)
``chunked``       one block too large for that, in row chunks
``solve``         ``solve_arrays``: split into blocks and solve each
``parallel``      blocks on a pool of forked worker processes
``adjacency``     neighbouring grids for borrowing
``frame``         ``link_households``: the GeoDataFrame face
``report``        ``LinkResult``: links, unlinked households with reason codes, members, grids, summary
"""

from gridmap.linkage.adjacency import grid_adjacency
from gridmap.linkage.frame import link_households, member_availability
from gridmap.linkage.problem import COST_SCALE, DistanceFn, Solution
from gridmap.linkage.report import (
                                    REASON_ALL_FULL,
                                    REASON_BEYOND,
                                    REASON_NO_GRID,
                                    REASON_NO_MEMBER,
                                    SHORT_FEW_REACHABLE,
                                    SHORT_SHARED,
                                    STATUS_BELOW_MIN,
                                    STATUS_IN_BAND,
                                    STATUS_UNAVAILABLE,
                                    LinkResult,
)
from gridmap.linkage.solve import solve_arrays

__all__ = [
                                    "COST_SCALE",
                                    "REASON_ALL_FULL",
                                    "REASON_BEYOND",
                                    "REASON_NO_GRID",
                                    "REASON_NO_MEMBER",
                                    "SHORT_FEW_REACHABLE",
                                    "SHORT_SHARED",
                                    "STATUS_BELOW_MIN",
                                    "STATUS_IN_BAND",
                                    "STATUS_UNAVAILABLE",
                                    "DistanceFn",
                                    "LinkResult",
                                    "Solution",
                                    "grid_adjacency",
                                    "link_households",
                                    "member_availability",
                                    "solve_arrays",
]
