"""Walking network on the Shanghai Bund OSM roads (../shared): walkable kinds, connectivity, distances
against networkx and the straight line, walking areas and coverage.
"""

from __future__ import annotations

import geopandas as gpd
import networkx as nx
import numpy as np
import pytest
import shapely

from gridmap.coverage import walking_areas, walking_coverage
from gridmap.metric import haversine_m
from gridmap.walknet import build_walk_network, walkable_mask


@pytest.fixture(scope="module")
def roads(shanghai):
    return gpd.read_file(shanghai / "roads.geojson")


@pytest.fixture(scope="module")
def net(roads):
    return build_walk_network(roads)


@pytest.fixture(scope="module")
def centres(shanghai, net):
    pois = gpd.read_file(shanghai / "pois.geojson")
    return pois.iloc[::25].reset_index(drop=True).assign(centre_id=lambda d: [f"C{i}" for i in range(len(d))])


def test_walkable_mask_on_osm_kinds(roads):
    ok = walkable_mask(roads)
    kind = roads["kind"].to_numpy()
    detail = roads["kind_detail"].fillna("").to_numpy()
    assert not ok[np.isin(kind, ["rail", "ferry"])].any()
    assert not ok[np.isin(detail, ["trunk", "trunk_link"])].any()
    assert ok[(kind == "path") & np.isin(detail, ["footway", "steps", "pedestrian", "path"])].all()
    assert ok[(kind == "minor_road") & (detail == "residential")].all()


def test_network_connects_tile_splits_and_keeps_footways(roads, net):
    # the tile-split roads join up: one piece holds essentially all walkable length
    walk = roads[walkable_mask(roads)].to_crs(net.crs)
    raw = build_walk_network(roads, min_component_m=0)
    from scipy.sparse.csgraph import connected_components
    _, lab = connected_components(raw.graph, directed=False)
    share = np.bincount(lab[raw.edge_u], weights=raw.edge_length).max() / raw.edge_length.sum()
    assert share > 0.97
    assert net.edge_length.sum() == pytest.approx(np.bincount(lab[raw.edge_u], weights=raw.edge_length).max())
    assert raw.edge_length.sum() == pytest.approx(walk.length.sum(), rel=1e-3)
    # footways are in the graph: most footway length lies on network edges
    foot = walk[walk["kind_detail"] == "footway"].geometry.union_all()
    on = shapely.intersection(shapely.union_all(net.edge_geom).buffer(0.5), foot).length
    assert on / foot.length > 0.9


def test_node_distances_match_networkx(net):
    g = nx.Graph()
    for u, v, w in zip(net.edge_u, net.edge_v, net.edge_length):
        if not g.has_edge(u, v) or g[u][v]["weight"] > w:
            g.add_edge(int(u), int(v), weight=float(w))
    rng = np.random.default_rng(2)
    for src in rng.choice(net.n_nodes, 3, replace=False):
        d, _ = net.node_distances(net.node_xy[src], limit=1500.0)
        ref = nx.single_source_dijkstra_path_length(g, int(src), cutoff=1500.0, weight="weight")
        got = {i: x for i, x in enumerate(d[0]) if np.isfinite(x)}
        assert set(got) == set(ref)
        np.testing.assert_allclose([got[i] for i in ref], [ref[i] for i in ref], atol=1e-6)


def test_walking_distance_never_shorter_than_straight_line(net, centres):
    rng = np.random.default_rng(0)
    lo, hi = net.node_xy.min(axis=0), net.node_xy.max(axis=0)
    targets = rng.uniform(lo, hi, size=(3000, 2))
    src = net.points_xy(centres)
    d = net.point_distances(src, targets, limit=3000.0)
    finite = np.isfinite(d)
    assert finite.sum() > 5000
    straight = np.sqrt(((src[:, None, :] - targets[None, :, :]) ** 2).sum(axis=2))
    assert (d[finite] >= straight[finite] - 1e-6).all()
    # against the great-circle distance too (UTM vs sphere differ by < 0.5 %)
    ll_s = net.xy_to_lonlat(src)
    ll_t = net.xy_to_lonlat(targets)
    hv = haversine_m(ll_s[:, None, 0], ll_s[:, None, 1], ll_t[None, :, 0], ll_t[None, :, 1])
    assert (d[finite] >= hv[finite] * 0.995).all()
    # the min over sources equals the per-source minimum
    dm = net.point_distances(src, targets, limit=3000.0, min_only=True)
    np.testing.assert_allclose(np.where(np.isfinite(dm), dm, -1), np.where(finite.any(0), d.min(0), -1), atol=1e-6)


def test_walking_area_inside_straight_circle(net, centres):
    limit = 1200.0
    areas = walking_areas(centres, net, limit)
    assert len(areas) == len(centres)
    src = net.points_xy(centres)
    nonempty = 0
    for (x, y), geom in zip(src, areas.geometry):
        if geom.is_empty:
            continue
        nonempty += 1
        utm = gpd.GeoSeries([geom], crs=4326).to_crs(net.crs).iloc[0]
        pts = shapely.get_coordinates(utm)
        assert np.hypot(pts[:, 0] - x, pts[:, 1] - y).max() <= limit + 1e-6
        assert utm.area < np.pi * limit ** 2
        assert utm.area > 0.1 * np.pi * limit ** 2
    assert nonempty >= len(centres) - 2


def test_walking_coverage_consistent_with_area_and_straight(net, centres):
    rng = np.random.default_rng(4)
    lo, hi = net.node_xy.min(axis=0), net.node_xy.max(axis=0)
    xy = rng.uniform(lo, hi, size=(4000, 2))
    ll = net.xy_to_lonlat(xy)
    hh = gpd.GeoDataFrame({"household_id": range(len(xy))}, geometry=gpd.points_from_xy(ll[:, 0], ll[:, 1]), crs=4326)
    wc = walking_coverage(hh, centres, net, 1200.0)
    from gridmap.coverage import straight_line_coverage
    sc = straight_line_coverage(hh, centres, 1200.0)
    # walking within 1,200 m implies straight line within 1,200 m (up to the UTM scale error)
    assert (sc.loc[wc["covered_walk"], "nearest_centre_m"] <= 1200.0 * 1.005).all()
    assert wc["covered_walk"].sum() < sc["covered"].sum()
    assert wc["covered_walk"].sum() > 0
