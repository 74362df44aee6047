"""包片联户 linkage engine: exactness against an independent MILP, reports, stability, visiting order.

Domain tier: built data only (no database, no browser, no ../shared).
"""

from __future__ import annotations

import itertools
import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import lil_matrix
from shapely.geometry import box

from gridmap.contract import (
    UNLINKED_FULL,
    UNLINKED_LABELS,
    UNLINKED_NO_GRID,
    UNLINKED_NO_MEMBER,
)
from gridmap.linkage import (
    REASON_ALL_FULL,
    REASON_BEYOND,
    REASON_NO_GRID,
    REASON_NO_MEMBER,
    STATUS_BELOW_MIN,
    STATUS_UNAVAILABLE,
    bellman_ford,
    grid_adjacency,
    link_households,
    problem,
    solve_arrays,
)
from gridmap.linkage import flow as flow_solver
from gridmap.metric import point_xy
from gridmap.visit_order import order_visits, route_length

from linkage_cases import _city, _gdf


# ------------------------------------------------------------------------------------------------
# An independent exact reference: lexicographic MILP with SciPy/HiGHS on the same semantics
#   1 max linked  2 min total shortfall below minimums  3 min cross-grid links
#   4 min total distance − keep bonus × kept previous links


def milp_reference(h_xy, m_xy, h_grid, m_grid, m_min, m_max, borrow=None, prev=None,
                   max_distance=None, keep_bonus=0.0):
    n, m = len(h_xy), len(m_xy)
    pairs = []
    for h in range(n):
        for j in range(m):
            if h_grid[h] < 0 or m_grid[j] < 0 or m_max[j] == 0:
                continue
            same = h_grid[h] == m_grid[j]
            cross = (not same) and borrow is not None and bool(borrow[h_grid[h], m_grid[j]])
            if not (same or cross):
                continue
            d = math.dist(h_xy[h], m_xy[j])
            if max_distance is not None and d > max_distance:
                continue
            pairs.append((h, j, d, cross))
    nx = len(pairs)
    nv = nx + m  # x_hj binaries, then shortfall s_j >= 0
    if nx == 0:
        return dict(linked=0, shortfall=int(np.sum(m_min[m_max > 0])), cross=0, objective=0.0)
    A = lil_matrix((n + 2 * m, nv))
    lo, hi = [], []
    for k, (h, j, _, _) in enumerate(pairs):
        A[h, k] = 1
        A[n + j, k] = 1  # load <= max
        A[n + m + j, k] = 1  # load + s_j >= min
    for j in range(m):
        A[n + m + j, nx + j] = 1
    lo = [0] * n + [0] * m + [int(m_min[j]) if m_max[j] > 0 else 0 for j in range(m)]
    hi = [1] * n + [int(m_max[j]) for j in range(m)] + [np.inf] * m
    cons = [LinearConstraint(A.tocsr(), lo, hi)]
    integrality = np.r_[np.ones(nx), np.zeros(m)]
    bounds = Bounds(np.zeros(nv), np.r_[np.ones(nx), np.full(m, np.inf)])
    opts = {"mip_rel_gap": 0.0}
    x_link = np.r_[np.ones(nx), np.zeros(m)]
    x_short = np.r_[np.zeros(nx), np.ones(m)]
    x_cross = np.r_[[1.0 if c else 0.0 for *_, c in pairs], np.zeros(m)]
    kept = [prev is not None and prev[h] == j for h, j, _, _ in pairs]
    x_dist = np.r_[[d - (keep_bonus if kp else 0.0) for (_, _, d, _), kp in zip(pairs, kept)], np.zeros(m)]
    out = {}
    for name, c, sense in (("linked", x_link, -1), ("shortfall", x_short, 1), ("cross", x_cross, 1),
                           ("objective", x_dist, 1)):
        res = milp(sense * c, constraints=cons, integrality=integrality, bounds=bounds, options=opts)
        assert res.success, res.message
        value = float(c @ res.x)
        out[name] = value if name == "objective" else int(round(value))
        if name == "linked":  # fix this tier (integral) before optimising the next one
            cons.append(LinearConstraint(c[None, :], out[name] - 0.5, np.inf))
        elif name != "objective":
            cons.append(LinearConstraint(c[None, :], -np.inf, out[name] + 0.5))
    return out


def engine_values(sol, h_xy, m_xy, h_grid, m_grid, m_min, m_max, prev=None, keep_bonus=0.0):
    member_of = sol.member_of
    li = np.flatnonzero(member_of >= 0)
    mj = member_of[li]
    load = np.bincount(mj, minlength=len(m_xy))
    active = m_max > 0
    d = np.linalg.norm(h_xy[li] - m_xy[mj], axis=1)
    kept = (prev[li] == mj) if prev is not None else np.zeros(len(li), bool)
    return dict(
        linked=len(li),
        shortfall=int(np.maximum(m_min - load, 0)[active].sum()),
        cross=int((h_grid[li] != m_grid[mj]).sum()),
        objective=float(d.sum() - keep_bonus * kept.sum()),
        load=load,
    )


def random_instance(seed, n_grids=2, n_h=(12, 30), n_m=(2, 8), band=(1, 4), spread=(0, 5)):
    rng = np.random.default_rng(seed)
    hs, ms, hg, mg = [], [], [], []
    for g in range(n_grids):
        nh = int(rng.integers(*n_h))
        nm = int(rng.integers(*n_m))
        origin = np.array([g * 500.0, 0.0])
        hs.append(origin + rng.uniform(0, 600, (nh, 2)))
        ms.append(origin + rng.uniform(0, 600, (nm, 2)))
        hg += [g] * nh
        mg += [g] * nm
    h_xy, m_xy = np.vstack(hs), np.vstack(ms)
    h_grid, m_grid = np.array(hg), np.array(mg)
    m_min = rng.integers(band[0], band[1] + 1, len(m_xy))
    m_max = m_min + rng.integers(spread[0], spread[1] + 1, len(m_xy))
    return h_xy, m_xy, h_grid, m_grid, m_min, m_max, rng


def assert_matches_reference(h_xy, m_xy, h_grid, m_grid, m_min, m_max, *, borrow=None, prev=None,
                             max_distance=None, keep_bonus=0.0, candidates=2):
    ref = milp_reference(h_xy, m_xy, h_grid, m_grid, m_min, m_max, borrow, prev, max_distance, keep_bonus)
    # The default solver (compiled shortest paths on all arcs), then OR-Tools on aggressively pruned
    # arcs (few candidates, no member side) so the certificate and its re-solves work.
    sol = solve_arrays(h_xy, m_xy, h_grid, m_grid, m_min, m_max, borrow=borrow, prev=prev,
                       max_distance_m=max_distance, keep_bonus_m=keep_bonus)
    _check(sol, ref, h_xy, m_xy, h_grid, m_grid, m_min, m_max, borrow, prev, max_distance, keep_bonus)
    saved = problem.MEMBER_SIDE, problem.DENSE_SOLVER
    problem.MEMBER_SIDE, problem.DENSE_SOLVER = 0.0, "pruned"
    try:
        sol = solve_arrays(h_xy, m_xy, h_grid, m_grid, m_min, m_max, borrow=borrow, prev=prev,
                           max_distance_m=max_distance, keep_bonus_m=keep_bonus, candidates=candidates)
    finally:
        problem.MEMBER_SIDE, problem.DENSE_SOLVER = saved
    got = _check(sol, ref, h_xy, m_xy, h_grid, m_grid, m_min, m_max, borrow, prev, max_distance, keep_bonus)
    return sol, got, ref


def _check(sol, ref, h_xy, m_xy, h_grid, m_grid, m_min, m_max, borrow, prev, max_distance, keep_bonus):
    got = engine_values(sol, h_xy, m_xy, h_grid, m_grid, m_min, m_max, prev, keep_bonus)
    # Feasibility of the engine's answer.
    assert np.all(got["load"] <= m_max)
    li = np.flatnonzero(sol.member_of >= 0)
    mj = sol.member_of[li]
    same = h_grid[li] == m_grid[mj]
    if borrow is None:
        assert same.all()
    else:
        assert np.all(same | borrow[h_grid[li], m_grid[mj]])
    if max_distance is not None:
        assert np.all(np.linalg.norm(h_xy[li] - m_xy[mj], axis=1) <= max_distance + 1e-9)
    # Lexicographic optimality: equal on every tier; distance equal up to the cm rounding.
    assert got["linked"] == ref["linked"]
    assert got["shortfall"] == ref["shortfall"]
    assert got["cross"] == ref["cross"]
    tol = 0.01 * max(1, got["linked"]) + 1e-6
    assert abs(got["objective"] - ref["objective"]) <= tol, (got["objective"], ref["objective"])
    return got


# ------------------------------------------------------------------------------------------------
# Optimality against the MILP


@pytest.mark.parametrize("seed", range(8))
def test_optimal_with_shortage(seed):
    # Few members with small maxima: households are left over ("all full").
    h_xy, m_xy, hg, mg, mn, mx, _ = random_instance(seed, n_h=(15, 30), n_m=(1, 4), band=(1, 3), spread=(1, 4))
    sol, got, ref = assert_matches_reference(h_xy, m_xy, hg, mg, mn, mx)
    assert got["linked"] < len(h_xy)  # the instance really is short


@pytest.mark.parametrize("seed", range(8))
def test_optimal_with_binding_lower_bounds(seed):
    # Many members with high minimums for few households: minimums bind and some cannot be met.
    h_xy, m_xy, hg, mg, mn, mx, _ = random_instance(100 + seed, n_h=(8, 16), n_m=(4, 8), band=(2, 4), spread=(0, 3))
    sol, got, ref = assert_matches_reference(h_xy, m_xy, hg, mg, mn, mx)
    assert ref["shortfall"] > 0 and sol.stats["tiered_blocks"] >= 1


@pytest.mark.parametrize("seed", range(6))
def test_optimal_with_lower_bounds_met_exactly(seed):
    # Minimums satisfiable but not trivially: the tiered network must fill them at extra distance.
    h_xy, m_xy, hg, mg, mn, mx, _ = random_instance(200 + seed, n_grids=1, n_h=(18, 24), n_m=(5, 7),
                                                    band=(3, 3), spread=(3, 5))
    sol, got, ref = assert_matches_reference(h_xy, m_xy, hg, mg, mn, mx)
    assert ref["shortfall"] == 0 and sol.stats["tiered_blocks"] == 1  # stage B really ran


@pytest.mark.parametrize("seed", range(8))
def test_optimal_with_max_distance(seed):
    h_xy, m_xy, hg, mg, mn, mx, rng = random_instance(300 + seed, n_h=(12, 25), n_m=(2, 6))
    assert_matches_reference(h_xy, m_xy, hg, mg, mn, mx, max_distance=float(rng.uniform(150, 350)))


@pytest.mark.parametrize("seed", range(8))
def test_optimal_with_cross_grid_borrowing(seed):
    h_xy, m_xy, hg, mg, mn, mx, rng = random_instance(400 + seed, n_grids=3, n_h=(8, 20), n_m=(1, 6))
    borrow = rng.random((3, 3)) < 0.6
    np.fill_diagonal(borrow, False)
    max_d = float(rng.uniform(300, 900)) if seed % 2 else None
    sol, got, ref = assert_matches_reference(h_xy, m_xy, hg, mg, mn, mx, borrow=borrow, max_distance=max_d)


@pytest.mark.parametrize("seed", range(6))
def test_optimal_with_previous_links_and_keep_bonus(seed):
    h_xy, m_xy, hg, mg, mn, mx, rng = random_instance(500 + seed, n_h=(10, 20), n_m=(2, 6))
    prev = np.full(len(h_xy), -1)
    for h in range(len(h_xy)):
        same = np.flatnonzero(mg == hg[h])
        if len(same) and rng.random() < 0.7:
            prev[h] = rng.choice(same)
    assert_matches_reference(h_xy, m_xy, hg, mg, mn, mx, prev=prev, keep_bonus=float(rng.uniform(0, 300)))


@pytest.mark.parametrize("candidates", [1, 2, 3, 50])
def test_pruning_never_changes_the_optimum(candidates):
    # Few candidates force certificate rounds; the answer must not depend on it.
    h_xy, m_xy, hg, mg, mn, mx, _ = random_instance(7, n_grids=2, n_h=(25, 35), n_m=(4, 7))
    sol, got, ref = assert_matches_reference(h_xy, m_xy, hg, mg, mn, mx, candidates=candidates)
    if candidates < 3:
        assert sol.stats["unpruned_blocks"] == 0
        assert sol.stats["rounds"] > sol.stats["blocks"]  # the certificate did add arcs


def test_grid_without_members_and_household_without_grid():
    h_xy = np.array([[0, 0], [10, 0], [1000, 0], [20, 0]], float)
    m_xy = np.array([[5, 0]], float)
    sol = solve_arrays(h_xy, m_xy, np.array([0, 0, 1, -1]), np.array([0]), np.array([1]), np.array([5]))
    assert sol.member_of.tolist() == [0, 0, -1, -1]
    assert sol.has_member.tolist() == [True, True, False, False]


def test_link_households_report_and_invariants():
    households, members, grids = _city(seed=3)
    res = link_households(households, members)
    links = res.links
    assert links["household_id"].is_unique  # each household linked at most once
    load = links.groupby("member_id").size()
    assert load.max() <= 10
    assert (links["grid_code"] == links["member_grid_code"]).all()
    assert res.summary["linked"] + res.summary["unlinked"] == len(households)
    # 4 grids × 40 households, 3–5 members each (≤ 50 capacity): no grid is short of capacity
    # unless it has 3 members (30 < 40); members needed = ceil(unlinked / 10).
    g = res.grids.set_index("grid_code")
    assert (g["members_needed"] == np.ceil(g["unlinked"] / 10).astype(int)).all()
    assert set(res.unlinked["reason"]) <= {REASON_ALL_FULL}
    # Visiting orders are 1..k per member.
    for _, grp in links.groupby("member_id"):
        assert sorted(grp["visit_order"]) == list(range(1, len(grp) + 1))
    # Distances are metres in UTM.
    xy_h = point_xy(households.set_index("household_id").loc[links["household_id"]].reset_index(), "EPSG:32651")
    xy_m = point_xy(members.set_index("member_id").loc[links["member_id"]].reset_index(), "EPSG:32651")
    assert np.allclose(np.linalg.norm(xy_h - xy_m, axis=1), links["distance_m"], atol=0.5)


def test_unlinked_reasons_and_nearest_outside():
    households, members, grids = _city(seed=1, grids=4, hh_per=30, members_per=(2, 3))
    members = members[members["grid_code"] != "G3"]  # G3 has no member at all
    # One household with no grid.
    extra = _gdf(["lost"], [(229_000.0, 3_349_000.0)], "household_id", grid_code=[None])
    households = pd.concat([households, extra], ignore_index=True)
    res = link_households(households, members, max_distance_m=350.0)
    reasons = res.unlinked.set_index("household_id")["reason"]
    assert reasons["lost"] == REASON_NO_GRID
    assert (reasons[[h for h in reasons.index if h.startswith("H3-")]] == REASON_NO_MEMBER).all()
    assert len(reasons[[h for h in reasons.index if h.startswith("H3-")]]) == 30
    others = reasons[[h for h in reasons.index if h[:3] in ("H0-", "H1-", "H2-")]]
    assert set(others) <= {REASON_ALL_FULL, REASON_BEYOND}
    # Beyond max distance really means no member of the grid within 350 m.
    hx = point_xy(households, "EPSG:32651")
    mx = point_xy(members, "EPSG:32651")
    for hid in others[others == REASON_BEYOND].index:
        i = households.index[households["household_id"] == hid][0]
        same = (members["grid_code"] == households.loc[i, "grid_code"]).to_numpy()
        assert np.linalg.norm(mx[same] - hx[i], axis=1).min() > 350.0
    g3 = res.grids.set_index("grid_code").loc["G3"]
    assert g3["members_needed"] == 3
    # Members with spare capacity elsewhere are listed, nearest first, none from G3 itself.
    outs = g3["nearest_outside"]
    assert all(o["grid_code"] != "G3" for o in outs)
    assert [o["distance_m"] for o in outs] == sorted(o["distance_m"] for o in outs)


def test_members_below_minimum_reported():
    # Grid with 7 households and 3 members of band 5–10: at most one member can reach 5.
    xy_h = [(230_000 + 10 * i, 3_350_000) for i in range(7)]
    households = _gdf([f"h{i}" for i in range(7)], xy_h, "household_id", grid_code=["A"] * 7)
    members = _gdf(["a", "b", "c"], [(230_000, 3_350_010), (230_030, 3_350_010), (230_060, 3_350_010)],
                   "member_id", grid_code=["A"] * 3)
    res = link_households(households, members)
    assert res.summary["linked"] == 7
    mem = res.members.set_index("member_id")
    # Least total shortfall: 15 needed, 7 available → shortfall 8 whatever the split.
    assert int(np.maximum(mem["min_links"] - mem["load"], 0).sum()) == 8
    assert (mem["status"] == STATUS_BELOW_MIN).sum() >= 2
    assert res.summary["members_below_min"] == (mem["status"] == STATUS_BELOW_MIN).sum()


def test_per_member_overrides_and_availability():
    xy_h = [(230_000 + 5 * i, 3_350_000) for i in range(12)]
    households = _gdf([f"h{i}" for i in range(12)], xy_h, "household_id", grid_code=["A"] * 12)
    members = _gdf(["near", "far", "off"], [(230_000, 3_350_001), (230_500, 3_350_000), (230_001, 3_350_000)],
                   "member_id", grid_code=["A"] * 3, max_links=[3, 10, 10], min_links=[0, 0, 0],
                   available=[True, True, False])
    res = link_households(households, members)
    load = res.members.set_index("member_id")["load"]
    assert load["near"] == 3 and load["far"] == 9 and load["off"] == 0


def test_availability_reads_the_contract_words():
    # Regression: 不在岗 ("not on duty") was read as available, so off-duty members were linked.
    xy_h = [(230_000 + 5 * i, 3_350_000) for i in range(6)]
    households = _gdf([f"h{i}" for i in range(6)], xy_h, "household_id", grid_code=["A"] * 6)
    words = ["不在岗", "离岗", "否", "在岗", None]
    members = _gdf(list("abcde"), [(230_000 + i, 3_350_001) for i in range(5)], "member_id",
                   grid_code=["A"] * 5, min_links=[0] * 5, available=words)
    res = link_households(households, members)
    mem = res.members.set_index("member_id")
    assert mem.loc[["a", "b", "c"], "load"].tolist() == [0, 0, 0]
    assert (mem.loc[["a", "b", "c"], "status"] == STATUS_UNAVAILABLE).all()
    assert mem.loc[["d", "e"], "load"].sum() == 6 and res.summary["members_available"] == 2


def test_availability_refuses_an_unknown_word_naming_the_row():
    households = _gdf(["h0"], [(230_000, 3_350_000)], "household_id", grid_code=["A"])
    members = _gdf(["a", "b"], [(230_000, 3_350_001)] * 2, "member_id", grid_code=["A"] * 2,
                   available=["是", "maybe"])
    with pytest.raises(ValueError, match=r"members row 2, column available: 'maybe'"):
        link_households(households, members)


def test_unlinked_reasons_are_the_contract_codes():
    households, members, _ = _city(seed=1, grids=3, hh_per=30, members_per=(1, 2))
    members = members[members["grid_code"] != "G2"]
    extra = _gdf(["lost"], [(229_000.0, 3_349_000.0)], "household_id", grid_code=[None])
    res = link_households(pd.concat([households, extra], ignore_index=True), members, max_distance_m=300.0)
    reasons = set(res.unlinked["reason"])
    assert {UNLINKED_NO_GRID, UNLINKED_NO_MEMBER, UNLINKED_FULL} <= reasons <= set(UNLINKED_LABELS)
    assert set(res.summary["unlinked_by_reason"]) == reasons

def test_cross_grid_borrowing_uses_neighbours_only_when_short():
    households, members, grids = _city(seed=5, grids=4, hh_per=30, members_per=(2, 3))
    # Make G1 rich in members (spare capacity), G0 short; G0–G1 share a boundary.
    rich = _gdf([f"X{i}" for i in range(6)], [(230_600 + 50 * i, 3_350_300) for i in range(6)], "member_id",
                grid_code=["G1"] * 6)
    members = pd.concat([members, rich], ignore_index=True)
    base = link_households(households, members, grids=grids)
    res = link_households(households, members, grids=grids, allow_cross_grid=True)
    assert res.summary["linked"] >= base.summary["linked"]
    cross = res.links[res.links["cross_grid"]]
    assert len(cross) > 0
    adj = grid_adjacency(grids)
    for _, row in cross.iterrows():
        assert row["member_grid_code"] in adj[row["grid_code"]]
    # Only the short grids borrow.
    g = base.grids.set_index("grid_code")
    assert set(cross["grid_code"]) <= set(g.index[g["capacity"] < g["households"]])


def test_grid_adjacency_shared_edges_not_corners():
    polys = [box(0, 0, 100, 100), box(100, 0, 200, 100), box(200.4, 100, 300, 200), box(0, 100.5, 100, 200)]
    grids = gpd.GeoDataFrame({"grid_code": ["A", "B", "C", "D"]}, geometry=polys,
                             crs="EPSG:32651").to_crs("EPSG:4326")
    adj = grid_adjacency(grids)
    assert adj["A"] == {"B", "D"}  # D is 0.5 m away: within the snap tolerance
    assert "C" not in adj["B"]  # corner contact only
    assert adj["C"] == set()


def test_stability_unchanged_input_changes_nothing():
    households, members, grids = _city(seed=11, grids=4, hh_per=40, members_per=(3, 6))
    first = link_households(households, members)
    previous = first.links[["household_id", "member_id"]]
    again = link_households(households, members, previous=previous)
    assert again.summary["links_changed"] == 0
    assert again.summary["changes"]["kept"] == len(previous)
    merged = first.links.merge(again.links, on="household_id")
    assert (merged["member_id_x"] == merged["member_id_y"]).all()


def test_stability_keeps_links_unless_saving_exceeds_bonus():
    # Two members, one household each side; previous links are crossed (each 100 m worse).
    households = _gdf(["h1", "h2"], [(230_000, 3_350_000), (230_200, 3_350_000)], "household_id", grid_code=["A", "A"])
    members = _gdf(["m1", "m2"], [(230_000, 3_350_050), (230_200, 3_350_050)], "member_id", grid_code=["A", "A"],
                   min_links=[0, 0], max_links=[1, 1])
    previous = pd.DataFrame({"household_id": ["h1", "h2"], "member_id": ["m2", "m1"]})
    # Swapping saves 2 × (206.2 − 50) ≈ 312 m in total, i.e. 156 m per changed link.
    kept = link_households(households, members, previous=previous, keep_bonus_m=200.0)
    assert kept.summary["links_changed"] == 0
    swapped = link_households(households, members, previous=previous, keep_bonus_m=100.0)
    assert swapped.summary["changes"]["reassigned"] == 2
    assert set(zip(swapped.links["household_id"], swapped.links["member_id"])) == {("h1", "m1"), ("h2", "m2")}


# ------------------------------------------------------------------------------------------------
# Visiting order


def _brute_force_best(points):
    k = len(points) - 1
    best = np.inf
    for perm in itertools.permutations(range(1, k + 1)):
        r = np.array([[0, *perm]])
        best = min(best, route_length(points[None], r)[0])
    return best


def test_visit_order_is_a_permutation_and_two_opt_local_optimum():
    rng = np.random.default_rng(0)
    m = 30
    member_xy = rng.uniform(0, 500, (m, 2))
    member_of = np.repeat(np.arange(m), rng.integers(1, 11, m))
    household_xy = rng.uniform(0, 500, (len(member_of), 2))
    member_of[::17] = -1  # some unlinked
    order = order_visits(member_of, household_xy, member_xy)
    assert (order[member_of < 0] == 0).all()
    gaps = []
    for j in range(m):
        idx = np.flatnonzero(member_of == j)
        if len(idx) == 0:
            continue
        assert sorted(order[idx]) == list(range(1, len(idx) + 1))
        route_pts = np.vstack([member_xy[j], household_xy[idx[np.argsort(order[idx])]]])
        length = route_length(route_pts[None], np.arange(len(route_pts))[None])[0]
        # No 2-opt move (segment reversal after home) improves the route.
        for a in range(1, len(route_pts)):
            for b in range(a + 1, len(route_pts)):
                r = np.r_[np.arange(a), np.arange(b, a - 1, -1), np.arange(b + 1, len(route_pts))]
                assert route_length(route_pts[None], r[None])[0] >= length - 1e-6
        if len(idx) <= 7:
            best = _brute_force_best(route_pts)
            assert length >= best - 1e-6
            gaps.append(length / best - 1)
    assert np.mean(gaps) < 0.05  # close to optimal on average


def test_visit_order_single_and_two_stops():
    member_xy = np.array([[0.0, 0.0], [100.0, 0.0]])
    household_xy = np.array([[50.0, 0.0], [10.0, 0.0], [300.0, 0.0]])
    order = order_visits(np.array([0, 0, 1]), household_xy, member_xy)
    assert order.tolist() == [2, 1, 1]


def test_parallel_blocks_give_the_same_answer():
    h_xy, m_xy, hg, mg, mn, mx, _ = random_instance(77, n_grids=6, n_h=(20, 40), n_m=(2, 6))
    one = solve_arrays(h_xy, m_xy, hg, mg, mn, mx)
    two = solve_arrays(h_xy, m_xy, hg, mg, mn, mx, n_jobs=2)
    assert np.array_equal(one.member_of, two.member_of)
    assert np.array_equal(one.reachable, two.reachable) and np.array_equal(one.has_within, two.has_within)
    assert one.stats == two.stats


def test_row_chunked_blocks_give_the_same_answer(monkeypatch):
    # Huge blocks (e.g. inputs without grid codes) are processed in row chunks without a cache.
    h_xy, m_xy, hg, mg, mn, mx, rng = random_instance(91, n_grids=3, n_h=(20, 30), n_m=(3, 6))
    borrow = np.ones((3, 3), bool)
    prev = np.where(rng.random(len(h_xy)) < 0.5, rng.integers(0, len(m_xy), len(h_xy)), -1)
    kw = dict(borrow=borrow, prev=prev, max_distance_m=700.0, keep_bonus_m=50.0, candidates=2)
    whole = solve_arrays(h_xy, m_xy, hg, mg, mn, mx, **kw)
    monkeypatch.setattr(problem, "CHUNK_PAIRS", 40)  # a few rows per chunk
    monkeypatch.setattr(problem, "MEMBER_SIDE", 0.0)
    chunked = solve_arrays(h_xy, m_xy, hg, mg, mn, mx, **{**kw, "candidates": 1})
    ref = milp_reference(h_xy, m_xy, hg, mg, mn, mx, borrow, prev, 700.0, 50.0)
    for sol in (whole, chunked):
        _check(sol, ref, h_xy, m_xy, hg, mg, mn, mx, borrow, prev, 700.0, 50.0)
    assert chunked.stats["unpruned_blocks"] == 0 and chunked.stats["rounds"] > chunked.stats["blocks"]


def _tiered_objective(a_h, a_m, a_cost, flow, n, m_min, W, tiered):
    """What each stage minimises: (unlinked, cost) lexicographically, or the tiered single cost."""
    load = np.bincount(a_m[flow], minlength=len(m_min))
    unlinked = n - int(flow.sum())
    cost = int(a_cost[flow].sum())
    if tiered:
        return (0, cost - W * int(np.minimum(load, m_min).sum()) + W * unlinked)
    return (unlinked, cost)


@pytest.mark.parametrize("seed", range(8))
def test_dense_certificate_matches_the_scattered_one(seed):
    # The dense fast path prices left-out arcs with exactly the potentials of the general path,
    # and its full-network check (no negative cycle) agrees with an unpruned re-solve.
    rng = np.random.default_rng(900 + seed)
    n, m = int(rng.integers(15, 40)), int(rng.integers(2, 7))
    cost = rng.integers(0, 60_000, (n, m)).astype(np.int64)
    cost[rng.random((n, m)) < 0.3] -= 30_000  # keep-bonus credits make some costs negative
    cost[rng.random((n, m)) < 0.2] = problem.NO_ARC  # beyond max distance / not allowed
    m_min = rng.integers(0, 4, m)
    m_max = m_min + rng.integers(0, 5, m)
    W = n * (int(np.abs(cost[cost < problem.NO_ARC]).max()) + 1) * 4 + 1
    a_h_all, a_m_all = np.nonzero(cost < problem.NO_ARC)
    for tiered, share in itertools.product((False, True), (0.4, 0.9, 0.97)):
        keep = rng.random(len(a_h_all)) < share  # few arcs: rarely optimal; most arcs: often
        a_h, a_m = a_h_all[keep], a_m_all[keep]
        a_cost = cost[a_h, a_m]
        flow = flow_solver.solve_network(n, m, a_h, a_m, a_cost, m_min, m_max, W, tiered)
        member_of = np.full(n, -1, dtype=np.int64)
        member_of[a_h[flow]] = a_m[flow]
        load = np.bincount(member_of[member_of >= 0], minlength=m)
        pi_h, pi_m = bellman_ford.arc_potentials(n, m, a_h, a_m, a_cost, flow, member_of, load, m_min, m_max, W, tiered)
        pruned = np.full((n, m), problem.NO_ARC, dtype=np.int64)
        pruned[a_h, a_m] = a_cost
        d_h, d_m, _ = bellman_ford.dense_potentials(pruned, member_of, load, m_min, m_max, W, tiered)
        assert np.array_equal(pi_h, d_h) and np.array_equal(pi_m, d_m)
        # Full-network check against an unpruned solve of the same stage.
        full_flow = flow_solver.solve_network(n, m, a_h_all, a_m_all, cost[a_h_all, a_m_all], m_min, m_max, W, tiered)
        best = _tiered_objective(a_h_all, a_m_all, cost[a_h_all, a_m_all], full_flow, n, m_min, W, tiered)
        got = _tiered_objective(a_h, a_m, a_cost, flow, n, m_min, W, tiered)
        certified = bellman_ford.dense_potentials(cost, member_of, load, m_min, m_max, W, tiered) is not None
        assert certified == (got == best), (certified, got, best)
        assert got >= best


@pytest.mark.parametrize("seed", [0, 2, 4, 5, 6, 8])
def test_exact_neighbourhood_resolve_is_optimal(seed):
    # One pruned candidate per household leaves flows far from optimal; the re-solve on the
    # flow's exact neighbourhood (arcs of reduced cost below the negative-cycle bound, instead
    # of all old candidates plus the violating arcs) must still land on the MILP optimum.
    h_xy, m_xy, hg, mg, mn, mx, _ = random_instance(1000 + seed, n_grids=2, n_h=(25, 40), n_m=(3, 7),
                                                    band=(1, 3), spread=(1, 5))
    sol, got, ref = assert_matches_reference(h_xy, m_xy, hg, mg, mn, mx, candidates=1)
    assert sol.stats["narrowed_rounds"] >= 1  # the neighbourhood really was used
