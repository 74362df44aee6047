"""Walking network: distances along walkable roads and the area reachable on foot.

步行网络 for the 15-minute service circle (15分钟服务圈): 15 min × 80 m/min = 1,200 m along walkable
ways. The graph is built from road lines (WGS84 in, a metric UTM CRS inside): lines are cut into
segments wherever they cross or touch (noding), near-coincident end points — as left by roads split
at map-tile edges — are merged first, and the segments become weighted undirected edges (weight =
length in metres). Shortest paths come from SciPy's compiled Dijkstra (``scipy.sparse.csgraph``),
with a distance ``limit`` so only the neighbourhood within the walking budget is explored.

Points off the network (service centres, households, H3 cell centres) are *snapped*: each gets its
nearest point on the nearest walkable segment and walks there in a straight line ("access leg").
A walking distance is therefore ``access(source) + along-network + access(target)``; by the
triangle inequality it is never shorter than the straight line between the two points, measured in
the same metric CRS.

The reachable area is a union of H3 cells, never an alpha shape: a cell is kept only when its
centre is reachable within ``limit - circumradius(cell)``, so every point of a kept cell is within
the walking budget of the centre (walk to the cell centre, then at most the circumradius straight).
The area is thus never larger than the truth and always lies inside the straight-line circle of
the same length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely
from pyproj import Transformer
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree
from shapely.geometry import MultiPolygon, Polygon, shape

from gridmap.contract import WALK_MINUTES, WALK_SPEED_M_PER_MIN, WGS84
from gridmap.metric import metric_crs

#: Default walking budget in metres (15 min × 80 m/min).
WALK_LIMIT_M = WALK_MINUTES * WALK_SPEED_M_PER_MIN

#: Road kinds a pedestrian may use (Tilezen ``kind``; OSM ``highway`` values are mapped below).
WALKABLE_KINDS = frozenset({"major_road", "minor_road", "path", "highway_link"})
#: Road details closed to pedestrians: motorways and (in Chinese cities, elevated) expressways.
NON_WALKABLE_DETAILS = frozenset({"motorway", "motorway_link", "trunk", "trunk_link", "raceway", "bus_guideway",
                                  "construction", "proposed", "abandoned"})
#: Kinds never walkable whatever the detail says.
NON_WALKABLE_KINDS = frozenset({"highway", "rail", "ferry", "aerialway", "aeroway", "piste"})

#: End points of different lines closer than this (metres) are one node: tile-edge splits leave
#: gaps of a few centimetres, while genuinely separate ways are metres apart.
SNAP_TOLERANCE_M = 0.5

#: Noding uses snap-rounding to this grid (metres), so a line ending a few centimetres short of
#: another (a T-junction drawn carelessly, a tile-edge cut) is joined to it.
NODING_GRID_M = 0.1

#: Connected pieces of network shorter than this in total (metres) are dropped: they are
#: fragments (a footway inside a courtyard, a cut-off tile remnant) that would trap a snapped point.
MIN_COMPONENT_M = 1000.0

#: Default farthest straight "access leg" from a point to the network (metres); points farther
#: from every walkable way are treated as unreachable on foot.
MAX_ACCESS_M = 300.0


def walkable_mask(roads: gpd.GeoDataFrame) -> np.ndarray:
    """Which road rows a pedestrian may use (bool array, one per row).

    Understands Tilezen columns (``kind`` = major_road / minor_road / path / rail / ferry …,
    ``kind_detail`` = footway / primary / motorway …) and OSM's ``highway`` column. Footways,
    paths, steps, pedestrian streets and ordinary roads count; motorways, trunk expressways,
    rail and ferries do not. A layer with none of these columns is taken as all walkable.
    """
    n = len(roads)
    ok = np.ones(n, dtype=bool)
    if "kind" in roads.columns:
        kind = roads["kind"].astype("string").str.strip().str.lower().fillna("")
        ok &= ~kind.isin(NON_WALKABLE_KINDS).to_numpy()
        known = kind.isin(WALKABLE_KINDS) | (kind == "")
        ok &= known.to_numpy()
    for col in ("kind_detail", "highway"):
        if col in roads.columns:
            detail = roads[col].astype("string").str.strip().str.lower().fillna("")
            ok &= ~detail.isin(NON_WALKABLE_DETAILS).to_numpy()
    if "foot" in roads.columns:
        foot = roads["foot"].astype("string").str.strip().str.lower().fillna("")
        ok &= ~foot.isin({"no", "private"}).to_numpy()
    return ok


@dataclass
class WalkNetwork:
    """An undirected walking graph in a metric CRS.

    Attributes
    ----------
    crs : the metric CRS (UTM, metres) every coordinate below is in.
    node_xy : ``(n_nodes, 2)`` node coordinates, metres.
    edge_u, edge_v : end nodes of each edge (int arrays).
    edge_length : edge lengths in metres (float array).
    edge_geom : the edges as shapely LineStrings in ``crs`` (direction ``u`` → ``v``).
    graph : ``n_nodes × n_nodes`` symmetric CSR matrix of edge lengths (shortest parallel edge).
    """

    crs: str
    node_xy: np.ndarray
    edge_u: np.ndarray
    edge_v: np.ndarray
    edge_length: np.ndarray
    edge_geom: np.ndarray
    graph: sp.csr_matrix
    _tree: shapely.STRtree = field(init=False, repr=False)
    _to_metric: Transformer = field(init=False, repr=False)
    _to_wgs: Transformer = field(init=False, repr=False)

    def __post_init__(self):
        self._tree = shapely.STRtree(self.edge_geom)
        self._to_metric = Transformer.from_crs(WGS84, self.crs, always_xy=True)
        self._to_wgs = Transformer.from_crs(self.crs, WGS84, always_xy=True)

    @property
    def n_nodes(self) -> int:
        return int(self.node_xy.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_u.shape[0])

    # coordinates -----------------------------------------------------------------------------

    def lonlat_to_xy(self, lon, lat) -> np.ndarray:
        """WGS84 degrees → ``(n, 2)`` metres in the network's CRS."""
        x, y = self._to_metric.transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
        return np.column_stack([np.atleast_1d(x), np.atleast_1d(y)])

    def xy_to_lonlat(self, xy) -> np.ndarray:
        """Metres in the network's CRS → ``(n, 2)`` WGS84 lon/lat degrees."""
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        lon, lat = self._to_wgs.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    def points_xy(self, points: gpd.GeoDataFrame) -> np.ndarray:
        """``(n, 2)`` metric coordinates of a WGS84 point layer."""
        coords = shapely.get_coordinates(points.geometry.values)
        return self.lonlat_to_xy(coords[:, 0], coords[:, 1])

    # snapping --------------------------------------------------------------------------------

    def snap(self, xy, max_distance: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest point on the network for each metric point.

        Returns ``(edge, along_m, access_m)``: the nearest edge index, the distance in metres from
        the edge's ``u`` end along the edge to the snapped point, and the straight access distance
        in metres from the point to the snapped point. Ties go to the lowest edge index. With
        ``max_distance`` (metres) points farther from every edge get ``access_m = inf`` (and edge
        0) — the search is then much faster.
        """
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        pts = shapely.points(xy)
        edge = np.zeros(len(pts), dtype=np.int64)
        access = np.full(len(pts), np.inf)
        along = np.zeros(len(pts))
        if len(pts) == 0:
            return edge, along, access
        idx, dist = self._tree.query_nearest(pts, max_distance=max_distance, return_distance=True, all_matches=True)
        order = np.lexsort((idx[1], idx[0]))
        first = np.ones(order.shape[0], dtype=bool)
        first[1:] = idx[0][order][1:] != idx[0][order][:-1]
        sel = order[first]
        edge[idx[0][sel]] = idx[1][sel]
        access[idx[0][sel]] = dist[sel]
        found = idx[0][sel]
        along[found] = shapely.line_locate_point(self.edge_geom[edge[found]], pts[found])
        return edge, along, access

    # shortest paths --------------------------------------------------------------------------

    def _augmented(self, edge: np.ndarray, along: np.ndarray, access: np.ndarray) -> sp.csr_matrix:
        """The graph plus one virtual node per source, joined to both ends of its snapped edge.

        A virtual node can never shortcut the network: going ``u`` → source → ``v`` costs
        ``2·access + length ≥ length``. SciPy's csgraph treats explicit zeros in a sparse matrix as
        zero-length edges, so a source exactly on a node is handled too.
        """
        n = self.n_nodes
        k = edge.shape[0]
        virt = n + np.arange(k)
        u = self.edge_u[edge]
        v = self.edge_v[edge]
        w_u = access + along
        w_v = access + (self.edge_length[edge] - along).clip(min=0.0)
        base = self.graph.tocoo()
        rows = np.concatenate([base.row, virt, u, virt, v])
        cols = np.concatenate([base.col, u, virt, v, virt])
        data = np.concatenate([base.data, w_u, w_u, w_v, w_v])
        # no duplicate (row, col) pairs exist: each virtual node is new and the base graph is simple
        g = sp.coo_matrix((data, (rows, cols)), shape=(n + k, n + k)).tocsr()
        return g

    def node_distances(self, source_xy, limit: float = WALK_LIMIT_M, *, min_only: bool = False,
                       max_access_m: float = MAX_ACCESS_M):
        """Walking distance (metres) from sources to every network node.

        Parameters
        ----------
        source_xy : ``(k, 2)`` metric coordinates of the sources (e.g. service centres).
        limit : walking budget in metres; nodes beyond it get ``inf`` (Dijkstra stops there).
        min_only : one row with the distance from the nearest source instead of one row per source.
        max_access_m : sources farther than this from every walkable way reach nothing.

        Returns
        -------
        ``(dist, snapped)``: ``dist`` is ``(k, n_nodes)`` (or ``(n_nodes,)`` with ``min_only``);
        ``snapped`` is the ``(edge, along_m, access_m)`` of the sources.
        """
        source_xy = np.asarray(source_xy, dtype=float).reshape(-1, 2)
        edge, along, access = self.snap(source_xy, max_access_m)
        ok = access <= max_access_m
        k = source_xy.shape[0]
        if not ok.any():
            shape = (self.n_nodes,) if min_only else (k, self.n_nodes)
            return np.full(shape, np.inf), (edge, along, access)
        g = self._augmented(edge[ok], along[ok], access[ok])
        idx = self.n_nodes + np.arange(int(ok.sum()))
        d = dijkstra(g, directed=False, indices=idx, limit=limit, min_only=min_only)
        if min_only:
            return d[: self.n_nodes], (edge, along, access)
        out = np.full((k, self.n_nodes), np.inf)
        out[ok] = d[:, : self.n_nodes]
        return out, (edge, along, access)

    def point_distances(self, source_xy, target_xy, limit: float = WALK_LIMIT_M, *, min_only: bool = False,
                        max_access_m: float = MAX_ACCESS_M, chunk: int = 64) -> np.ndarray:
        """Walking distance in metres from each source to each target point (``inf`` beyond ``limit``).

        ``access(source) + network + access(target)``, including the direct walk along the edge
        when source and target snap to the same edge. Returns ``(k_sources, n_targets)``, or the
        per-target minimum over sources (``(n_targets,)``) with ``min_only``. Sources are processed
        ``chunk`` at a time to bound memory.
        """
        source_xy = np.asarray(source_xy, dtype=float).reshape(-1, 2)
        target_xy = np.asarray(target_xy, dtype=float).reshape(-1, 2)
        t_edge, t_along, t_access = self.snap(target_xy, max_access_m)
        t_ok = t_access <= max_access_m
        t_len = self.edge_length[t_edge]
        tu = self.edge_u[t_edge]
        tv = self.edge_v[t_edge]
        k = source_xy.shape[0]
        if min_only:
            nd, (s_edge, s_along, s_access) = self.node_distances(source_xy, limit, min_only=True,
                                                                  max_access_m=max_access_m)
            out = np.minimum(nd[tu] + t_along, nd[tv] + (t_len - t_along)) + t_access
            out = self._same_edge(out, t_edge, t_along, t_access, s_edge, s_along, s_access,
                                  s_access <= max_access_m, reduce=True)
            out[~t_ok | (out > limit)] = np.inf
            return out
        res = np.full((k, target_xy.shape[0]), np.inf)
        for start in range(0, k, chunk):
            stop = min(k, start + chunk)
            nd, (s_edge, s_along, s_access) = self.node_distances(source_xy[start:stop], limit,
                                                                  max_access_m=max_access_m)
            block = np.minimum(nd[:, tu] + t_along, nd[:, tv] + (t_len - t_along)) + t_access
            block = self._same_edge(block, t_edge, t_along, t_access, s_edge, s_along, s_access,
                                    s_access <= max_access_m, reduce=False)
            block[:, ~t_ok] = np.inf
            block[block > limit] = np.inf
            res[start:stop] = block
        return res

    @staticmethod
    def _same_edge(dist, t_edge, t_along, t_access, s_edge, s_along, s_access, s_ok, reduce: bool):
        """Lower ``dist`` where a source and a target share an edge: walk straight along it."""
        src = np.flatnonzero(s_ok)
        if src.shape[0] == 0:
            return dist
        order = np.argsort(s_edge[src], kind="stable")
        src = src[order]
        keys = s_edge[src]
        lo = np.searchsorted(keys, t_edge, side="left")
        hi = np.searchsorted(keys, t_edge, side="right")
        tgt = np.flatnonzero(hi > lo)
        for t in tgt:
            for s in src[lo[t]:hi[t]]:
                direct = s_access[s] + abs(t_along[t] - s_along[s]) + t_access[t]
                if reduce:
                    if direct < dist[t]:
                        dist[t] = direct
                elif direct < dist[s, t]:
                    dist[s, t] = direct
        return dist

    # reachable area --------------------------------------------------------------------------

    def service_area(self, centre_xy, limit: float = WALK_LIMIT_M, res: int = 11, *,
                     node_dist: np.ndarray | None = None, max_access_m: float = MAX_ACCESS_M) -> Polygon | MultiPolygon:
        """Area reachable on foot from one centre within ``limit`` metres, as WGS84 (multi)polygon.

        The union of the H3 cells (resolution ``res``; res 11 cells have ~25 m edges) whose centre
        is reachable within ``limit - circumradius`` — see the module docstring for why this never
        overstates the area. Only cells inside the straight-line circle of radius ``limit`` are
        candidates, since no walk is shorter than the straight line. ``node_dist`` may pass a
        precomputed row of :meth:`node_distances` for this centre.
        """
        centre_xy = np.asarray(centre_xy, dtype=float).reshape(1, 2)
        cells = self._cells_in_circle(centre_xy[0], limit, res)
        if cells.shape[0] == 0:
            return Polygon()
        cxy, radius = self._cell_centres_and_radii(cells)
        if node_dist is None:
            node_dist, _ = self.node_distances(centre_xy, limit, max_access_m=max_access_m)
            node_dist = node_dist[0]
        s_edge, s_along, s_access = self.snap(centre_xy, max_access_m)
        t_edge, t_along, t_access = self.snap(cxy, max_access_m)
        d = np.minimum(node_dist[self.edge_u[t_edge]] + t_along,
                       node_dist[self.edge_v[t_edge]] + (self.edge_length[t_edge] - t_along)) + t_access
        d = self._same_edge(d, t_edge, t_along, t_access, s_edge, s_along, s_access,
                            s_access <= max_access_m, reduce=True)
        if s_access[0] > max_access_m:
            return Polygon()
        keep = (t_access <= max_access_m) & (d + radius <= limit)
        return cells_union(cells[keep])

    def _cells_in_circle(self, centre_xy, radius_m: float, res: int) -> np.ndarray:
        """H3 cells (uint64) whose centres lie within ``radius_m`` of a metric point."""
        circle = shapely.Point(centre_xy).buffer(radius_m, quad_segs=32)
        ring = np.asarray(circle.exterior.coords)
        ll = self.xy_to_lonlat(ring)
        poly = h3.LatLngPoly([(lat, lon) for lon, lat in ll])
        cells = np.array([h3.str_to_int(c) for c in h3.polygon_to_cells(poly, res)], dtype=np.uint64)
        return cells

    def _cell_centres_and_radii(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Metric centre of each H3 cell and its circumradius (farthest vertex), metres."""
        strs = [h3.int_to_str(int(c)) for c in cells]
        centres = np.array([h3.cell_to_latlng(c) for c in strs], dtype=float)
        bounds = [h3.cell_to_boundary(c) for c in strs]
        nv = np.array([len(b) for b in bounds])
        flat = np.array([p for b in bounds for p in b], dtype=float)
        cxy = self.lonlat_to_xy(centres[:, 1], centres[:, 0])
        bxy = self.lonlat_to_xy(flat[:, 1], flat[:, 0])
        owner = np.repeat(np.arange(cells.shape[0]), nv)
        d = np.sqrt(((bxy - cxy[owner]) ** 2).sum(axis=1))
        radius = np.zeros(cells.shape[0])
        np.maximum.at(radius, owner, d)
        return cxy, radius


def cells_union(cells) -> Polygon | MultiPolygon:
    """Union of H3 cells as a WGS84 (multi)polygon, via H3's own outline (fast, exact edges)."""
    cells = [h3.int_to_str(int(c)) for c in cells]
    if not cells:
        return Polygon()
    geo = h3.cells_to_geo(cells)
    return cast("Polygon | MultiPolygon", shape(geo))  # H3 outlines are (multi)polygons


def build_walk_network(roads: gpd.GeoDataFrame, *, crs: str | None = None, walkable_only: bool = True,
                       snap_tolerance_m: float = SNAP_TOLERANCE_M,
                       min_component_m: float = MIN_COMPONENT_M) -> WalkNetwork:
    """Build the walking graph from WGS84 road lines.

    Parameters
    ----------
    roads : GeoDataFrame of (Multi)LineStrings in WGS84 with optional ``kind`` / ``kind_detail`` /
        ``highway`` columns (see :func:`walkable_mask`).
    crs : metric CRS to work in; the UTM zone of the roads by default.
    walkable_only : drop rows :func:`walkable_mask` rejects (motorways, rail, ferries).
    snap_tolerance_m : end points of different lines closer than this are merged into one node.
    min_component_m : connected pieces whose total length is below this (metres) are dropped;
        the largest piece is always kept.

    Returns
    -------
    WalkNetwork in ``crs`` (metres); edges are the noded segments, so every crossing of two lines
    is a node.
    """
    if roads.crs is not None and not roads.crs.equals(WGS84):
        roads = roads.to_crs(WGS84)
    if walkable_only:
        roads = roads[walkable_mask(roads)]
    geoms = np.asarray(roads.geometry.values, dtype=object)
    roads = roads[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    if len(roads) == 0:
        raise ValueError("no walkable road lines")
    crs = crs or metric_crs(roads)
    metric = roads.geometry.to_crs(crs).values
    lines = shapely.get_parts(metric)
    lines = lines[shapely.get_type_id(lines) == 1]  # LineStrings only
    lines = lines[shapely.length(lines) > 0]
    lines = _merge_near_endpoints(lines, snap_tolerance_m)
    # Noding: the union splits every line at every crossing and shared vertex.
    noded = shapely.get_parts(shapely.union_all(lines, grid_size=NODING_GRID_M))
    noded = noded[(shapely.get_type_id(noded) == 1) & (shapely.length(noded) > 0)]
    start = shapely.get_coordinates(shapely.get_point(noded, 0))
    end = shapely.get_coordinates(shapely.get_point(noded, -1))
    ends = np.vstack([start, end])
    # After noding equal end points are bit-identical; rounding to the micrometre only guards
    # against representation noise.
    keys = np.round(ends, 6)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    m = noded.shape[0]
    u = inverse[:m]
    v = inverse[m:]
    length = shapely.length(noded)
    loop = u == v
    u, v, length, noded = u[~loop], v[~loop], length[~loop], noded[~loop]
    n = uniq.shape[0]
    graph = _graph(u, v, length, n)
    _, label = connected_components(graph, directed=False)
    size = np.bincount(label[u], weights=length, minlength=label.max() + 1)
    keep_comp = (size >= min_component_m) | (size == size.max())
    if not keep_comp.all():
        keep_edge = keep_comp[label[u]]
        used = np.unique(np.concatenate([u[keep_edge], v[keep_edge]]))
        renum = np.full(n, -1, dtype=np.int64)
        renum[used] = np.arange(used.shape[0])
        u, v, length, noded = renum[u[keep_edge]], renum[v[keep_edge]], length[keep_edge], noded[keep_edge]
        uniq = uniq[used]
        n = uniq.shape[0]
        graph = _graph(u, v, length, n)
    return WalkNetwork(crs=crs, node_xy=uniq, edge_u=u.astype(np.int64), edge_v=v.astype(np.int64),
                       edge_length=length.astype(float), edge_geom=noded, graph=graph)


def _graph(u, v, w, n) -> sp.csr_matrix:
    """Symmetric CSR adjacency keeping the shortest of parallel edges."""
    df = pd.DataFrame({"r": np.concatenate([u, v]), "c": np.concatenate([v, u]), "w": np.concatenate([w, w])})
    # pandas-stubs types a column min as a Series, but with as_index=False it is a DataFrame
    df = cast(pd.DataFrame, df.groupby(["r", "c"], as_index=False, sort=False)["w"].min())
    return sp.csr_matrix((df["w"].to_numpy(), (df["r"].to_numpy(), df["c"].to_numpy())), shape=(n, n))


def _merge_near_endpoints(lines: np.ndarray, tol: float) -> np.ndarray:
    """Move end points of lines that lie within ``tol`` metres of each other onto their mean."""
    if lines.shape[0] == 0 or tol <= 0:
        return lines
    start = shapely.get_coordinates(shapely.get_point(lines, 0))
    end = shapely.get_coordinates(shapely.get_point(lines, -1))
    pts = np.vstack([start, end])
    pairs = cKDTree(pts).query_pairs(tol, output_type="ndarray")
    if pairs.shape[0] == 0:
        return lines
    adj = sp.coo_matrix((np.ones(pairs.shape[0]), (pairs[:, 0], pairs[:, 1])), shape=(pts.shape[0],) * 2)
    _, label = connected_components(adj, directed=False)
    sums = np.zeros((label.max() + 1, 2))
    np.add.at(sums, label, pts)
    counts = np.bincount(label).astype(float)
    moved = sums[label] / counts[label][:, None]
    m = lines.shape[0]
    out = lines.copy()
    changed = np.flatnonzero(np.any(moved != pts, axis=1))
    for i in np.unique(changed % m):
        coords = shapely.get_coordinates(out[i])
        coords[0] = moved[i]
        coords[-1] = moved[i + m]
        out[i] = shapely.linestrings(coords)
    return out


