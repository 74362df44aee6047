"""Proposed sites (gridmap.sites candidates + gridmap.siting.choose_sites) against a brute-force optimum
over every k-subset of the candidates, on small random cases; and the heat cells' counts."""

from __future__ import annotations

from itertools import combinations

import geopandas as gpd
import numpy as np
import pytest

from gridmap.metric import haversine_m


def _households(rng, n):
    lon = 121.48 + rng.random(n) * 0.03
    lat = 31.20 + rng.random(n) * 0.03
    return gpd.GeoDataFrame({"household_id": [f"H{i}" for i in range(n)]}, geometry=gpd.points_from_xy(lon, lat),
                            crs="EPSG:4326")


def _brute_force(cands, hh, covered, k, radius_m=1000.0):
    c = np.column_stack([cands.geometry.x, cands.geometry.y])
    h = np.column_stack([hh.geometry.x, hh.geometry.y])[~covered]
    within = np.array([haversine_m(x, y, h[:, 0], h[:, 1]) <= radius_m for x, y in c])  # candidates × demand
    return max(int(within[list(s)].any(axis=0).sum()) for s in combinations(range(len(c)), k))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_proposed_sites_reach_the_brute_force_optimum(seed):
    from gridmap.siting import choose_sites
    from gridmap.sites import household_cell_candidates

    rng = np.random.default_rng(seed)
    hh = _households(rng, 40)
    cands = household_cell_candidates(hh)
    assert 3 <= len(cands) <= 40
    cands = cands.iloc[:12]  # keep the brute force small: C(12, 2) subsets
    covered = rng.random(len(hh)) < 0.3
    sites, result = choose_sites(cands, hh, 2, covered=covered)
    assert result.optimal
    assert int(sites["newly_covered"].sum()) == _brute_force(cands, hh, covered, 2)


def test_candidates_are_cell_centres_near_their_households():
    from gridmap.sites import household_cell_candidates

    hh = _households(np.random.default_rng(7), 30)
    cands = household_cell_candidates(hh)
    h = np.column_stack([hh.geometry.x, hh.geometry.y])
    for p in cands.geometry:  # every candidate is within a res-9 cell (edge ~174 m) of a household
        assert haversine_m(p.x, p.y, h[:, 0], h[:, 1]).min() < 400


def test_heat_counts_cells_and_open_ones():
    import h3

    from gridmap.heat import count_cells

    a = h3.str_to_int(h3.latlng_to_cell(31.205, 121.485, 10))
    b = h3.str_to_int(h3.latlng_to_cell(31.225, 121.505, 10))
    out = count_cells([a, a, b], [True, False, False])
    assert sorted(zip(out["n"], out["open"])) == [(1, 0), (2, 1)]
    assert all(h3.get_resolution(h3.int_to_str(int(c))) == 9 for c in out["cell"])
    assert len(count_cells([], [])) == 0
