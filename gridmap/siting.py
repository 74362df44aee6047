"""Where to add service stations: the maximal covering location problem (MCLP, 选址).

Given candidate sites (points: POIs, vacant lots) and the households outside every existing
15-minute service circle, choose ``k`` sites that bring the most of them inside a circle — by
straight-line radius (default 1,000 m) or by walking distance along a road network (default
1,200 m, see :mod:`gridmap.walknet`).

Exact for normal sizes
----------------------
The MCLP (Church & ReVelle 1974) is solved as a mixed 0-1 programme through OR-Tools (CBC by
default; SCIP, HiGHS or CP-SAT selectable), warm-started from the heuristic below::

    maximise   Σ_s w_s · y_s
    subject to y_s ≤ Σ_{j ∈ J(s)} x_j      for every demand class s
               Σ_j x_j = k,   x_j ∈ {0, 1},  0 ≤ y_s ≤ 1

Households are first reduced *without loss*: households covered by no candidate are dropped, and
households covered by exactly the same set of candidates ``J(s)`` become one demand class ``s`` of
weight ``w_s`` (their count) — any solution covers all or none of a class, so the optimum is
unchanged while the model shrinks from households to distinct cover patterns. The solver proves
optimality (status OPTIMAL) — the result then carries ``optimal=True``.

Heuristic above a size limit
----------------------------
When the reduced model has more than ``exact_max_nnz`` non-zeros (or the MIP hits its time limit),
the answer is labelled ``method="greedy+swap heuristic"`` and ``optimal=False``: lazy greedy
(≥ 1 − 1/e ≈ 63 % of the optimum, the coverage function being submodular) improved by 1-swaps, with
an upper bound on the optimum reported so the gap is visible.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import scipy.sparse as sp
from ortools.linear_solver import pywraplp
from scipy.spatial import cKDTree

from gridmap.contract import SERVICE_RADIUS_M, WGS84
from gridmap.coverage import _lonlat, _Projector, _radii, _PRESELECT_SLACK
from gridmap.metric import haversine_m

#: Above this many non-zeros in the reduced cover matrix the exact model is skipped.
EXACT_MAX_NNZ = 2_000_000

#: Default OR-Tools MIP backend ("CBC", "SCIP", "HIGHS" or "SAT" = CP-SAT); CBC proved fastest on
#: reduced MCLP models (bench/coverage_gaps.py), CP-SAT's bound is weak on this structure.
MIP_BACKEND = "CBC"

METHOD_EXACT = "exact MIP (OR-Tools)"
METHOD_HEURISTIC = "greedy+swap heuristic (not proven optimal)"


@dataclass
class SitingResult:
    """Outcome of :func:`maximal_covering`.

    Attributes
    ----------
    chosen : indices of the chosen candidates (columns of the cover matrix), in order of their
        marginal gain (first = most households added).
    covered : total weight (households) covered by the chosen sites.
    marginal : weight each chosen site adds when added in ``chosen`` order (sums to ``covered``).
    reach : weight each chosen site covers on its own (overlaps counted for each).
    optimal : True when the solver proved optimality.
    bound : an upper bound on the optimum (equals ``covered`` when optimal).
    method : ``METHOD_EXACT`` or ``METHOD_HEURISTIC``.
    seconds : solve time, wall clock.
    classes : number of demand classes after the lossless reduction.
    """

    chosen: np.ndarray
    covered: float
    marginal: np.ndarray
    reach: np.ndarray
    optimal: bool
    bound: float
    method: str
    seconds: float
    classes: int = 0
    info: dict = field(default_factory=dict)


def reduce_demand(cover: sp.csr_matrix, weight: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """Lossless reduction: drop uncoverable rows, merge rows with identical cover sets (weights summed).

    ``cover`` is ``n_demand × n_candidates`` (bool/0-1 CSR); returns ``(classes, class_weight)``.
    """
    cover = sp.csr_matrix(cover, dtype=bool)
    cover.sum_duplicates()
    cover.sort_indices()
    nnz_row = np.diff(cover.indptr)
    keep = np.flatnonzero(nnz_row > 0)
    if keep.shape[0] == 0:
        return sp.csr_matrix((0, cover.shape[1]), dtype=bool), np.zeros(0)
    idx, ptr = cover.indices, cover.indptr
    keys = [idx[ptr[i]:ptr[i + 1]].tobytes() for i in keep]
    codes, uniques = pd.factorize(pd.Series(keys, dtype=object), sort=False)
    w = np.bincount(codes, weights=np.asarray(weight, dtype=float)[keep], minlength=len(uniques))
    first = np.full(len(uniques), -1, dtype=np.int64)
    first[codes[::-1]] = keep[::-1]
    classes = cover[first]
    return sp.csr_matrix(classes, dtype=bool), w


def covered_weight(cover: sp.csr_matrix, weight: np.ndarray, chosen) -> float:
    """Total weight of rows covered by at least one chosen column."""
    chosen = np.asarray(chosen, dtype=np.int64)
    if chosen.shape[0] == 0:
        return 0.0
    hit = np.asarray(cover[:, chosen].sum(axis=1)).ravel() > 0
    return float(np.asarray(weight, dtype=float)[hit].sum())


def maximal_covering(cover: sp.csr_matrix, weight: np.ndarray, k: int, *, exact_max_nnz: int = EXACT_MAX_NNZ,
                     time_limit_s: float = 60.0, workers: int = 1, force: str | None = None,
                     backend: str = MIP_BACKEND) -> SitingResult:
    """Choose ``k`` columns of ``cover`` maximising the weight of rows covered (MCLP).

    Parameters
    ----------
    cover : ``n_demand × n_candidates`` 0-1 matrix (row i covered by column j).
    weight : demand weights (households), length ``n_demand``.
    k : number of sites to open (capped at the number of candidates).
    exact_max_nnz : size limit (non-zeros after reduction) for the exact MIP.
    time_limit_s : MIP time limit; if reached without proof the result is labelled heuristic.
    workers : MIP solver threads.
    backend : OR-Tools MIP backend (``CBC`` default, ``SCIP``, ``HIGHS``, ``SAT``).
    force : ``"exact"`` or ``"heuristic"`` to bypass the size rule (tests, benchmarks).

    Returns
    -------
    SitingResult (see its docstring); ``optimal`` is True only with a proof.
    """
    t0 = time.perf_counter()
    cover = sp.csr_matrix(cover, dtype=bool)
    m = cover.shape[1]
    k = int(min(k, m))
    classes, w = reduce_demand(cover, weight)
    use_exact = force == "exact" or (force is None and classes.nnz <= exact_max_nnz)
    greedy = _greedy_swap(classes, w, k)
    if use_exact and k > 0 and classes.shape[0] > 0 and greedy[1] >= greedy[2] - 1e-9:
        # the greedy answer meets its own upper bound: optimal without a MIP
        chosen, value, bound, optimal = greedy[0], greedy[1], greedy[2], True
        method = METHOD_EXACT
    elif use_exact and k > 0 and classes.shape[0] > 0:
        chosen, value, bound, optimal = _mip(classes, w, k, greedy[0], time_limit_s, workers, backend)
        method = METHOD_EXACT if optimal else METHOD_HEURISTIC
        if value < greedy[1]:  # never return worse than the heuristic start
            chosen, value = greedy[0], greedy[1]
    else:
        chosen, value, bound = greedy
        method = METHOD_HEURISTIC
        # the greedy bound can still prove a heuristic answer optimal
        optimal = bool(value >= bound - 1e-9)
    chosen, marginal = _order_by_marginal(classes, w, np.asarray(chosen, dtype=np.int64))
    reach = np.array([float(w[classes[:, j].nonzero()[0]].sum()) for j in chosen]) if chosen.shape[0] else np.zeros(0)
    return SitingResult(chosen=chosen, covered=float(value), marginal=marginal, reach=reach, optimal=bool(optimal),
                        bound=float(max(bound, value)), method=method, seconds=time.perf_counter() - t0,
                        classes=int(classes.shape[0]))


def _mip(classes: sp.csr_matrix, w: np.ndarray, k: int, hint, time_limit_s: float, workers: int, backend: str):
    """Exact MCLP on the reduced classes through OR-Tools' MIP wrapper.

    Returns ``(chosen, value, bound, optimal)``. ``y`` may be continuous: with integer ``x`` the
    maximisation drives each ``y_s`` to ``min(1, Σ x_j)``, so the LP relaxation only concerns ``x``.
    """
    n, m = classes.shape
    solver = pywraplp.Solver.CreateSolver(backend)
    if solver is None:
        raise ValueError(f"OR-Tools MIP backend {backend!r} is not available")
    x = [solver.BoolVar(f"x{j}") for j in range(m)]
    y = [solver.NumVar(0.0, 1.0, f"y{s}") for s in range(n)]
    solver.Add(solver.Sum(x) == k)
    idx, ptr = classes.indices, classes.indptr
    for s in range(n):
        solver.Add(y[s] <= solver.Sum([x[j] for j in idx[ptr[s]:ptr[s + 1]]]))
    obj = solver.Objective()
    for s in range(n):
        obj.SetCoefficient(y[s], float(w[s]))
    obj.SetMaximization()
    hint = set(int(j) for j in hint)
    solver.SetHint(x, [1.0 if j in hint else 0.0 for j in range(m)])
    solver.SetNumThreads(int(workers))
    solver.SetTimeLimit(int(time_limit_s * 1000))
    status = solver.Solve()
    if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return np.array(sorted(hint), dtype=np.int64), 0.0, float(w.sum()), False
    chosen = np.array([j for j in range(m) if x[j].solution_value() > 0.5], dtype=np.int64)
    value = covered_weight(classes, w, chosen)
    optimal = status == pywraplp.Solver.OPTIMAL
    bound = value if optimal else float(obj.BestBound())
    return chosen, value, bound, optimal


def _greedy_swap(classes: sp.csr_matrix, w: np.ndarray, k: int, max_rounds: int = 20):
    """Lazy greedy, then first-improvement 1-swaps; returns ``(chosen, value, upper_bound)``.

    The bound is the classic online bound for monotone submodular coverage: for any greedy prefix
    S, OPT ≤ f(S) + sum of the ``k`` largest marginal gains w.r.t. S; the minimum over prefixes
    (and the total weight) is reported.
    """
    n, m = classes.shape
    total = float(w.sum())
    if k == 0 or n == 0:
        return np.zeros(0, dtype=np.int64), 0.0, 0.0 if n == 0 else total
    csc = classes.tocsc()
    col_rows = [csc.indices[csc.indptr[j]:csc.indptr[j + 1]] for j in range(m)]
    covered = np.zeros(n, dtype=bool)
    gains = np.array([w[r].sum() for r in col_rows])
    bound = min(total, float(np.sort(gains)[::-1][:k].sum()))
    heap = [(-g, j) for j, g in enumerate(gains)]
    heapq.heapify(heap)
    chosen: list[int] = []
    value = 0.0
    while len(chosen) < k and heap:
        g, j = heapq.heappop(heap)
        fresh = float(w[col_rows[j][~covered[col_rows[j]]]].sum())
        if heap and fresh < -heap[0][0] - 1e-12:
            heapq.heappush(heap, (-fresh, j))
            continue
        chosen.append(j)
        covered[col_rows[j]] = True
        value += fresh
        if len(chosen) < k:
            rest = np.array([float(w[r[~covered[r]]].sum()) for r in col_rows])
            rest[chosen] = 0.0
            bound = min(bound, value + float(np.sort(rest)[::-1][:k].sum()))
    # 1-swap local search: replace one chosen site by one unchosen if it covers strictly more.
    count = np.zeros(n, dtype=np.int32)
    for j in chosen:
        count[col_rows[j]] += 1
    for _ in range(max_rounds):
        improved = False
        for pos, j in enumerate(list(chosen)):
            loss = float(w[col_rows[j][count[col_rows[j]] == 1]].sum())
            count[col_rows[j]] -= 1
            best_gain, best_c = loss, -1
            for c in range(m):
                if c in chosen:
                    continue
                gain = float(w[col_rows[c][count[col_rows[c]] == 0]].sum())
                if gain > best_gain + 1e-9:
                    best_gain, best_c = gain, c
            if best_c >= 0:
                chosen[pos] = best_c
                count[col_rows[best_c]] += 1
                value += best_gain - loss
                improved = True
            else:
                count[col_rows[j]] += 1
        if not improved:
            break
    return np.array(chosen, dtype=np.int64), float(value), float(max(bound, value))


def _order_by_marginal(classes: sp.csr_matrix, w: np.ndarray, chosen: np.ndarray):
    """Order chosen sites greedily by marginal gain; returns ``(ordered, marginal)``."""
    if chosen.shape[0] == 0:
        return chosen, np.zeros(0)
    csc = classes.tocsc()
    rows = {int(j): csc.indices[csc.indptr[j]:csc.indptr[j + 1]] for j in chosen}
    covered = np.zeros(classes.shape[0], dtype=bool)
    left = [int(j) for j in chosen]
    order, gains = [], []
    while left:
        g = [float(w[rows[j][~covered[rows[j]]]].sum()) for j in left]
        i = int(np.argmax(g))
        j = left.pop(i)
        order.append(j)
        gains.append(g[i])
        covered[rows[j]] = True
    return np.array(order, dtype=np.int64), np.array(gains)


# cover matrices --------------------------------------------------------------------------------

def straight_cover(candidates: gpd.GeoDataFrame, demand: gpd.GeoDataFrame,
                   radius_m: float | None = None) -> sp.csr_matrix:
    """``n_demand × n_candidates`` bool CSR: haversine distance ≤ the candidate's radius (metres).

    Candidates may carry ``radius_m``; others use ``radius_m`` (default 1,000 m). A UTM KD-tree
    preselects with a margin; the decision is the haversine distance (WGS84 inputs).
    """
    d_ll = _lonlat(demand)
    c_ll = _lonlat(candidates)
    n, m = d_ll.shape[0], c_ll.shape[0]
    if n == 0 or m == 0:
        return sp.csr_matrix((n, m), dtype=bool)
    proj = _Projector(d_ll)
    tree = cKDTree(proj(d_ll))
    c_xy = proj(c_ll)
    radii = _radii(candidates, SERVICE_RADIUS_M if radius_m is None else radius_m)
    rows, cols = [], []
    for j in range(m):
        near = np.asarray(tree.query_ball_point(c_xy[j], radii[j] * (1 + _PRESELECT_SLACK) + 1.0), dtype=np.int64)
        if near.shape[0] == 0:
            continue
        ok = haversine_m(c_ll[j, 0], c_ll[j, 1], d_ll[near, 0], d_ll[near, 1]) <= radii[j]
        rows.append(near[ok])
        cols.append(np.full(int(ok.sum()), j, dtype=np.int64))
    if not rows:
        return sp.csr_matrix((n, m), dtype=bool)
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    return sp.csr_matrix((np.ones(r.shape[0], dtype=bool), (r, c)), shape=(n, m))


def walking_cover(candidates: gpd.GeoDataFrame, demand: gpd.GeoDataFrame, network, limit_m: float,
                  chunk: int = 64, **kw) -> sp.csr_matrix:
    """``n_demand × n_candidates`` bool CSR: walking distance along ``network`` ≤ ``limit_m`` metres."""
    n, m = len(demand), len(candidates)
    if n == 0 or m == 0:
        return sp.csr_matrix((n, m), dtype=bool)
    c_xy = network.points_xy(candidates)
    d_xy = network.points_xy(demand)
    rows, cols = [], []
    for start in range(0, m, chunk):
        d = network.point_distances(c_xy[start:start + chunk], d_xy, limit_m, chunk=chunk, **kw)
        jj, ii = np.nonzero(np.isfinite(d))
        rows.append(ii)
        cols.append(jj + start)
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    return sp.csr_matrix((np.ones(r.shape[0], dtype=bool), (r, c)), shape=(n, m))


def choose_sites(candidates: gpd.GeoDataFrame, households: gpd.GeoDataFrame, k: int, *,
                 covered=None, radius_m: float | None = None, network=None, walk_limit_m: float | None = None,
                 id_column: str | None = None, **solver_kw) -> tuple[gpd.GeoDataFrame, SitingResult]:
    """Choose ``k`` new service-station sites covering the most still-uncovered households.

    Parameters
    ----------
    candidates : WGS84 points (optional id column ``site_id`` / ``candidate_id`` / ``centre_id`` /
        ``id``; else the row number; optional ``radius_m``).
    households : WGS84 points.
    k : sites to choose.
    covered : bool mask of households already inside an existing circle (these do not count);
        ``None`` = all count.
    radius_m : straight-line radius in metres (default 1,000 m) — used when ``network`` is None.
    network : a :class:`gridmap.walknet.WalkNetwork` to measure walking distance instead.
    walk_limit_m : walking budget in metres (default 1,200 m).
    solver_kw : passed to :func:`maximal_covering`.

    Returns
    -------
    ``(sites, result)``: ``sites`` is a WGS84 GeoDataFrame of the chosen candidates, in order of
    marginal gain, with ``rank``, ``newly_covered`` (households this site adds in that order — the
    column sums to the total newly covered), ``reach`` (uncovered households within this site's
    circle on its own), ``method`` and ``optimal``.
    """
    mask = np.ones(len(households), dtype=bool) if covered is None else ~np.asarray(covered, dtype=bool)
    demand = households[mask]
    if network is not None:
        from gridmap.walknet import WALK_LIMIT_M
        cover = walking_cover(candidates, demand, network, WALK_LIMIT_M if walk_limit_m is None else walk_limit_m)
    else:
        cover = straight_cover(candidates, demand, radius_m)
    res = maximal_covering(cover, np.ones(len(demand)), k, **solver_kw)
    sites = candidates.iloc[res.chosen].copy()
    if id_column is None:
        id_column = next((c for c in ("site_id", "candidate_id", "centre_id", "id") if c in candidates.columns), None)
    sites["site_id"] = sites[id_column].astype(str).to_numpy() if id_column else [str(i) for i in res.chosen]
    sites["rank"] = np.arange(1, len(sites) + 1)
    sites["newly_covered"] = res.marginal.astype(int)
    sites["reach"] = res.reach.astype(int)
    sites["method"] = res.method
    sites["optimal"] = res.optimal
    sites = gpd.GeoDataFrame(sites, geometry=candidates.geometry.iloc[res.chosen].values, crs=WGS84)
    return sites.reset_index(drop=True), res
