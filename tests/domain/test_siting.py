"""Choosing new service-station sites (MCLP): optimal against brute force, heuristic labelled and bounded."""

from __future__ import annotations

import itertools

import geopandas as gpd
import numpy as np
import pytest
import scipy.sparse as sp

from gridmap.metric import haversine_m
from gridmap.siting import (METHOD_EXACT, METHOD_HEURISTIC, covered_weight, maximal_covering,
                            reduce_demand, straight_cover)


def _brute(cover, weight, k):
    m = cover.shape[1]
    return max(covered_weight(cover, weight, c) for c in itertools.combinations(range(m), min(k, m)))


@pytest.mark.parametrize("seed", range(40))
def test_exact_is_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, m, k = rng.integers(5, 60), rng.integers(2, 10), rng.integers(1, 5)
    cover = sp.csr_matrix(rng.random((n, m)) < rng.uniform(0.05, 0.4))
    weight = rng.integers(1, 9, n).astype(float)
    best = _brute(cover, weight, k)
    res = maximal_covering(cover, weight, k, force="exact")
    assert res.optimal and res.method == METHOD_EXACT
    assert res.covered == pytest.approx(best)
    assert covered_weight(cover, weight, res.chosen) == pytest.approx(best)
    assert len(res.chosen) == min(k, m) and len(set(res.chosen.tolist())) == len(res.chosen)
    assert res.marginal.sum() == pytest.approx(best)
    # the heuristic is labelled, never beats the optimum, and its bound is valid
    h = maximal_covering(cover, weight, k, force="heuristic")
    assert h.method == METHOD_HEURISTIC
    assert h.covered <= best + 1e-9
    assert h.bound >= best - 1e-9
    assert h.covered >= (1 - 1 / np.e) * best - 1e-9


@pytest.mark.parametrize("backend", ["SCIP", "SAT"])
def test_other_backends_agree(backend):
    rng = np.random.default_rng(11)
    cover = sp.csr_matrix(rng.random((80, 12)) < 0.2)
    weight = rng.integers(1, 5, 80).astype(float)
    best = _brute(cover, weight, 3)
    res = maximal_covering(cover, weight, 3, force="exact", backend=backend)
    assert res.covered == pytest.approx(best)


def test_reduction_is_lossless():
    rng = np.random.default_rng(1)
    cover = sp.csr_matrix(rng.random((500, 6)) < 0.3)
    weight = rng.integers(1, 4, 500).astype(float)
    classes, w = reduce_demand(cover, weight)
    assert classes.shape[0] <= 2 ** 6 - 1
    assert w.sum() == weight[np.asarray(cover.sum(axis=1)).ravel() > 0].sum()
    for combo in itertools.combinations(range(6), 2):
        assert covered_weight(classes, w, combo) == covered_weight(cover, weight, combo)


def test_size_limit_switches_to_labelled_heuristic():
    rng = np.random.default_rng(3)
    cover = sp.csr_matrix(rng.random((300, 30)) < 0.1)
    res = maximal_covering(cover, np.ones(300), 4, exact_max_nnz=10)
    assert res.method == METHOD_HEURISTIC
    assert res.bound >= res.covered


def test_straight_cover_exact():
    rng = np.random.default_rng(8)
    lon = 121.49 + rng.uniform(-0.02, 0.02, 400)
    lat = 31.23 + rng.uniform(-0.02, 0.02, 400)
    hh = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs=4326)
    cands = gpd.GeoDataFrame({"radius_m": [300.0, 700.0, np.nan]},
                             geometry=gpd.points_from_xy(lon[:3] + 0.001, lat[:3]), crs=4326)
    a = straight_cover(cands, hh, 500.0).toarray()
    r = np.array([300.0, 700.0, 500.0])
    ref = haversine_m(lon[:, None], lat[:, None], cands.geometry.x.to_numpy()[None], cands.geometry.y.to_numpy()[None]) <= r
    assert (a == ref).all()
