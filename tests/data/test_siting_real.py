"""Service-centre siting on real data (../shared): Hangzhou straight-line and Shanghai walking cover
against brute force.
"""

from __future__ import annotations

import itertools

import geopandas as gpd
import numpy as np

from gridmap.metric import haversine_m
from gridmap.siting import (choose_sites)


def test_choose_sites_on_hangzhou_matches_brute_force(hangzhou_scenario):
    hh = hangzhou_scenario["households"]
    centres = hangzhou_scenario["service_centres"]
    from gridmap.coverage import straight_line_coverage
    cov = straight_line_coverage(hh, centres.iloc[:5], 800.0)
    cands = hh.iloc[::997][["household_id", "geometry"]].rename(columns={"household_id": "site_id"}).reset_index(drop=True)
    cands = cands.iloc[:14]
    sites, res = choose_sites(cands, hh, 3, covered=cov["covered"].to_numpy(), radius_m=800.0)
    # brute force with haversine on every uncovered household
    out = hh[~cov["covered"].to_numpy()]
    d = haversine_m(out.geometry.x.to_numpy()[:, None], out.geometry.y.to_numpy()[:, None],
                    cands.geometry.x.to_numpy()[None, :], cands.geometry.y.to_numpy()[None, :])
    inside = d <= 800.0
    best = max(inside[:, list(c)].any(axis=1).sum() for c in itertools.combinations(range(len(cands)), 3))
    assert res.optimal and res.covered == best
    assert sites["newly_covered"].sum() == best
    assert list(sites["rank"]) == [1, 2, 3]
    for row in sites.itertuples():
        j = cands.index[cands["site_id"] == row.site_id][0]
        assert row.reach == inside[:, j].sum()
    assert sites["newly_covered"].is_monotonic_decreasing


def test_walking_sites_match_brute_force(shanghai):
    from gridmap.walknet import build_walk_network
    net = build_walk_network(gpd.read_file(shanghai / "roads.geojson"))
    rng = np.random.default_rng(6)
    lo, hi = net.node_xy.min(axis=0), net.node_xy.max(axis=0)
    xy = rng.uniform(lo, hi, size=(1500, 2))
    ll = net.xy_to_lonlat(xy)
    hh = gpd.GeoDataFrame({"household_id": range(len(xy))}, geometry=gpd.points_from_xy(ll[:, 0], ll[:, 1]), crs=4326)
    cands = hh.iloc[:10].rename(columns={"household_id": "site_id"}).reset_index(drop=True)
    sites, res = choose_sites(cands, hh, 2, network=net, walk_limit_m=900.0)
    d = net.point_distances(xy[:10], xy, limit=900.0)
    inside = np.isfinite(d).T
    best = max(inside[:, list(c)].any(axis=1).sum() for c in itertools.combinations(range(10), 2))
    assert res.optimal and res.covered == best and best > 0
