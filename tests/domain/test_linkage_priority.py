"""包片联户 special-group priority: 独居老人, 残疾人, 低保 … linked first, exactly (against an independent MILP).

The reference solves the lexicographic objective with SciPy/HiGHS tier by tier, the special tier
*first*: 1 max special-group households linked, 2 max households linked, 3 min shortfall below the
members' minimums, 4 min cross-grid links, 5 min total distance − keep bonus. The engine puts the
special tier after the linked and shortfall tiers; the values must still agree (the first three
tiers never conflict — package docstring), which these tests check as well.
"""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import lil_matrix
from shapely.geometry import Point

from gridmap.contract import SPECIAL_TAGS
from gridmap.linkage import link_households, problem, solve_arrays
from gridmap.linkage.frame import special_households


def _allowed_pairs(h_xy, m_xy, h_grid, m_grid, m_max, borrow, max_distance):
    pairs = []
    for h in range(len(h_xy)):
        for j in range(len(m_xy)):
            if h_grid[h] < 0 or m_grid[j] < 0 or m_max[j] == 0:
                continue
            same = h_grid[h] == m_grid[j]
            cross = (not same) and borrow is not None and bool(borrow[h_grid[h], m_grid[j]])
            d = math.dist(h_xy[h], m_xy[j])
            if (same or cross) and (max_distance is None or d <= max_distance):
                pairs.append((h, j, d, cross))
    return pairs


def milp_priority_reference(h_xy, m_xy, h_grid, m_grid, m_min, m_max, special, borrow=None, prev=None,
                            max_distance=None, keep_bonus=0.0):
    """Optimal tier values, the special tier first (MILP, exact: ``mip_rel_gap = 0``)."""
    n, m = len(h_xy), len(m_xy)
    pairs = _allowed_pairs(h_xy, m_xy, h_grid, m_grid, m_max, borrow, max_distance)
    nx = len(pairs)
    if nx == 0:
        return dict(special=0, linked=0, shortfall=int(np.sum(m_min[m_max > 0])), cross=0, objective=0.0)
    A = lil_matrix((n + 2 * m, nx + m))  # x_hj binaries, then shortfall s_j >= 0
    for k, (h, j, _, _) in enumerate(pairs):
        A[h, k] = 1
        A[n + j, k] = 1
        A[n + m + j, k] = 1
    for j in range(m):
        A[n + m + j, nx + j] = 1
    lo = [0] * (n + m) + [int(m_min[j]) if m_max[j] > 0 else 0 for j in range(m)]
    hi = [1] * n + [int(x) for x in m_max] + [np.inf] * m
    cons = [LinearConstraint(A.tocsr(), lo, hi)]
    integrality = np.r_[np.ones(nx), np.zeros(m)]
    bounds = Bounds(np.zeros(nx + m), np.r_[np.ones(nx), np.full(m, np.inf)])
    kept = [prev is not None and prev[h] == j for h, j, _, _ in pairs]
    tiers = (
        ("special", np.r_[[1.0 if special[h] else 0.0 for h, *_ in pairs], np.zeros(m)], -1),
        ("linked", np.r_[np.ones(nx), np.zeros(m)], -1),
        ("shortfall", np.r_[np.zeros(nx), np.ones(m)], 1),
        ("cross", np.r_[[1.0 if c else 0.0 for *_, c in pairs], np.zeros(m)], 1),
        ("objective", np.r_[[d - (keep_bonus if kp else 0.0) for (_, _, d, _), kp in zip(pairs, kept)],
                            np.zeros(m)], 1),
    )
    out = {}
    for name, c, sense in tiers:
        res = milp(sense * c, constraints=cons, integrality=integrality, bounds=bounds,
                   options={"mip_rel_gap": 0.0})
        assert res.success, res.message
        value = float(c @ res.x)
        if name == "objective":
            out[name] = value
            break
        out[name] = int(round(value))
        # Fix this integral tier before optimising the next one.
        cons.append(LinearConstraint(c[None, :], out[name] - 0.5, np.inf) if sense < 0
                    else LinearConstraint(c[None, :], -np.inf, out[name] + 0.5))
    return out


def engine_tiers(member_of, h_xy, m_xy, h_grid, m_grid, m_min, m_max, special, prev=None, keep_bonus=0.0):
    li = np.flatnonzero(member_of >= 0)
    mj = member_of[li]
    load = np.bincount(mj, minlength=len(m_xy))
    kept = (prev[li] == mj) if prev is not None else np.zeros(len(li), bool)
    assert np.all(load <= m_max)
    return dict(special=int(special[li].sum()), linked=len(li),
                shortfall=int(np.maximum(m_min - load, 0)[m_max > 0].sum()),
                cross=int((h_grid[li] != m_grid[mj]).sum()),
                objective=float(np.linalg.norm(h_xy[li] - m_xy[mj], axis=1).sum() - keep_bonus * kept.sum()))


def scarce_instance(seed, n_grids=2, n_h=(12, 24), n_m=(1, 4), band=(1, 3), spread=(0, 3), special_rate=0.3):
    """Random grids (600 m squares, metres) with fewer member places than households."""
    rng = np.random.default_rng(seed)
    hs, ms, hg, mg = [], [], [], []
    for g in range(n_grids):
        nh, nm = int(rng.integers(*n_h)), int(rng.integers(*n_m))
        origin = np.array([g * 500.0, 0.0])
        hs.append(origin + rng.uniform(0, 600, (nh, 2)))
        ms.append(origin + rng.uniform(0, 600, (nm, 2)))
        hg += [g] * nh
        mg += [g] * nm
    h_xy, m_xy = np.vstack(hs), np.vstack(ms)
    m_min = rng.integers(band[0], band[1] + 1, len(m_xy))
    m_max = m_min + rng.integers(spread[0], spread[1] + 1, len(m_xy))
    special = rng.random(len(h_xy)) < special_rate
    return h_xy, m_xy, np.array(hg), np.array(mg), m_min, m_max, special, rng


def assert_priority_optimal(h_xy, m_xy, hg, mg, mn, mx, special, *, borrow=None, prev=None, max_distance=None,
                            keep_bonus=0.0):
    """Engine (default solver, then OR-Tools with aggressive pruning so the certificate works) equals the MILP on every tier."""
    ref = milp_priority_reference(h_xy, m_xy, hg, mg, mn, mx, special, borrow, prev, max_distance, keep_bonus)
    kw = dict(borrow=borrow, prev=prev, special=special, max_distance_m=max_distance, keep_bonus_m=keep_bonus)
    sols = [solve_arrays(h_xy, m_xy, hg, mg, mn, mx, **kw)]
    saved = problem.MEMBER_SIDE, problem.DENSE_SOLVER
    problem.MEMBER_SIDE, problem.DENSE_SOLVER = 0.0, "pruned"
    try:
        sols.append(solve_arrays(h_xy, m_xy, hg, mg, mn, mx, candidates=1, **kw))
    finally:
        problem.MEMBER_SIDE, problem.DENSE_SOLVER = saved
    for sol in sols:
        got = engine_tiers(sol.member_of, h_xy, m_xy, hg, mg, mn, mx, special, prev, keep_bonus)
        for tier in ("special", "linked", "shortfall", "cross"):
            assert got[tier] == ref[tier], (tier, got, ref)
        assert abs(got["objective"] - ref["objective"]) <= 0.01 * max(1, got["linked"]) + 1e-6, (got, ref)
    return sols[0], ref


# ------------------------------------------------------------------------------------------------
# Against the MILP


@pytest.mark.parametrize("seed", range(10))
def test_special_first_with_scarce_capacity(seed):
    h_xy, m_xy, hg, mg, mn, mx, special, _ = scarce_instance(1000 + seed)
    sol, ref = assert_priority_optimal(h_xy, m_xy, hg, mg, mn, mx, special)
    assert ref["linked"] < len(h_xy)  # really scarce: someone is left out


@pytest.mark.parametrize("seed", range(6))
def test_special_first_with_binding_minimums(seed):
    # Many members with high minimums: the shortfall tier binds beside the special one.
    h_xy, m_xy, hg, mg, mn, mx, special, _ = scarce_instance(1100 + seed, n_h=(5, 10), n_m=(4, 8), band=(2, 4))
    sol, ref = assert_priority_optimal(h_xy, m_xy, hg, mg, mn, mx, special)
    assert ref["shortfall"] > 0


@pytest.mark.parametrize("seed", range(6))
def test_special_first_with_distance_limit_and_borrowing(seed):
    h_xy, m_xy, hg, mg, mn, mx, special, rng = scarce_instance(1200 + seed, n_grids=3, n_h=(8, 18))
    borrow = rng.random((3, 3)) < 0.6
    np.fill_diagonal(borrow, False)
    max_d = float(rng.uniform(250, 700)) if seed % 2 else None
    assert_priority_optimal(h_xy, m_xy, hg, mg, mn, mx, special, borrow=borrow, max_distance=max_d)


@pytest.mark.parametrize("seed", range(4))
def test_special_first_with_previous_links(seed):
    # A kept ordinary link (keep bonus) must still give way to an unlinked special household.
    h_xy, m_xy, hg, mg, mn, mx, special, rng = scarce_instance(1300 + seed)
    prev = np.array([rng.choice(np.flatnonzero(mg == g)) if rng.random() < 0.7 else -1 for g in hg])
    assert_priority_optimal(h_xy, m_xy, hg, mg, mn, mx, special, prev=prev, keep_bonus=float(rng.uniform(0, 400)))


@pytest.mark.parametrize("special_rate", [0.0, 1.0])
def test_no_or_only_special_households(special_rate):
    h_xy, m_xy, hg, mg, mn, mx, special, _ = scarce_instance(1400, special_rate=special_rate)
    assert_priority_optimal(h_xy, m_xy, hg, mg, mn, mx, special)


def test_row_chunked_and_parallel_blocks_agree(monkeypatch):
    h_xy, m_xy, hg, mg, mn, mx, special, _ = scarce_instance(1500, n_grids=3)
    ref = milp_priority_reference(h_xy, m_xy, hg, mg, mn, mx, special)
    dense = solve_arrays(h_xy, m_xy, hg, mg, mn, mx, special=special)
    two = solve_arrays(h_xy, m_xy, hg, mg, mn, mx, special=special, n_jobs=2)
    monkeypatch.setattr(problem, "CHUNK_PAIRS", 7)  # every block in row chunks of at most 7 pairs
    chunked = solve_arrays(h_xy, m_xy, hg, mg, mn, mx, special=special, candidates=1)
    for sol in (dense, two, chunked):
        got = engine_tiers(sol.member_of, h_xy, m_xy, hg, mg, mn, mx, special)
        assert (got["special"], got["linked"], got["shortfall"]) == (ref["special"], ref["linked"], ref["shortfall"])
        assert abs(got["objective"] - ref["objective"]) <= 0.01 * got["linked"] + 1e-6


# ------------------------------------------------------------------------------------------------
# The case the old engine got wrong, through the GeoDataFrame face


def _points(rows, crs="EPSG:32650"):
    """Rows of (id, x metres, y metres, extra columns) as a WGS84 GeoDataFrame, from UTM 50N."""
    frame = gpd.GeoDataFrame(rows, geometry=[Point(r.pop("x"), r.pop("y")) for r in rows], crs=crs)
    return frame.to_crs("EPSG:4326")


def test_lone_elder_is_linked_before_a_nearer_ordinary_household():
    # One member with room for one household: the ordinary household is 20 m away, the 独居老人
    # 300 m. Distance alone (the old engine) links the ordinary one and leaves the elder unlinked.
    x0, y0 = 500_000.0, 3_350_000.0
    households = _points([
        {"household_id": "ordinary", "grid_code": "G1", "tags": None, "x": x0 + 20, "y": y0},
        {"household_id": "elder", "grid_code": "G1", "tags": ["独居老人"], "x": x0 + 300, "y": y0},
    ])
    members = _points([{"member_id": "M1", "grid_code": "G1", "x": x0, "y": y0}])
    result = link_households(households, members, min_links=0, max_links=1)
    assert result.links["household_id"].tolist() == ["elder"]
    assert result.unlinked[["household_id", "special"]].values.tolist() == [["ordinary", False]]
    s = result.summary
    assert (s["special_households"], s["special_linked"], s["special_unlinked"]) == (1, 1, 0)


def test_priority_stays_inside_the_members_who_could_serve():
    # The elder of grid G2 has no member there: it stays unlinked and takes no place in G1.
    x0, y0 = 500_000.0, 3_350_000.0
    households = _points([
        {"household_id": "h1", "grid_code": "G1", "tags": "退役军人", "x": x0 + 10, "y": y0},
        {"household_id": "elder2", "grid_code": "G2", "tags": "低保户,独居老人", "x": x0 + 30, "y": y0},
    ])
    members = _points([{"member_id": "M1", "grid_code": "G1", "x": x0, "y": y0}])
    result = link_households(households, members, min_links=0, max_links=1)
    assert result.links["household_id"].tolist() == ["h1"]
    assert result.summary["special_unlinked"] == 1 and result.summary["special_linked"] == 0
    assert bool(result.unlinked.set_index("household_id").loc["elder2", "special"])


def test_special_tags_read_from_lists_and_text():
    frame = gpd.GeoDataFrame({"tags": [["独居老人"], "低保，残疾人", " 留守儿童 ", None, float("nan"), "退役军人", []]})
    assert special_households(frame).tolist() == [True, True, True, False, False, False, False]
    assert special_households(gpd.GeoDataFrame({"household_id": ["a"]})).tolist() == [False]
    assert {"独居老人", "残疾人", "低保", "空巢老人", "留守儿童", "重病"} <= set(SPECIAL_TAGS)
