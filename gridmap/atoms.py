"""Atoms for districting: the indivisible pieces grids are built from, and who touches whom.

An atom is a polygon of a region (a community, 社区, or the part of it being redrawn) carrying a
household count. The atoms of a region tile it exactly — every square metre belongs to exactly one
atom — so any grid made as a union of atoms is a piece of an exact tiling of the community.

Two kinds of atoms are built:

* **H3 cells** (``h3_atoms``): every H3 cell overlapping the region, clipped to it; a cell cut by
  the boundary into several pieces gives one atom per piece. Households count in the piece that
  contains them.
* **Buildings** (``building_atoms``): the Voronoi cell of each building's representative point,
  clipped to the region, so grid boundaries run between buildings and never through the point a
  building is known by. A building's households are never split across grids — except a building
  that alone exceeds the band's maximum, which gets several seeds (territories) sharing its households.
* **Footprints** (``footprint_atoms``): territories grown from the building footprints (a
  morphological tessellation: Voronoi cells of points along each footprint, dissolved per building),
  each holding its building whole; footprints that touch are one building, and only a building that
  alone exceeds the band's maximum is sliced.

Everything here is in a metric CRS (metres; the caller projects, normally to the local UTM zone).
All geometry is snapped to a 1 mm precision grid so that neighbouring atoms share identical edges,
which makes shared-edge lengths (and hence perimeters of unions) exact sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import h3
import numpy as np
import pyproj
import shapely
from scipy import sparse
from shapely.geometry import MultiPoint, Polygon

#: Snapping grid (metres) for all atom geometry.
PRECISION_M = 0.001
#: Shared boundaries shorter than this (metres) are corner touches, not adjacency.
MIN_SHARED_M = 0.01


@dataclass
class Atoms:
    """Atoms of one region, all arrays of length ``n`` (metric CRS, metres).

    Attributes
    ----------
    geoms : ndarray of shapely Polygon
        Atom polygons; together they tile the region.
    weight : ndarray of int64
        Households per atom.
    xy : ndarray (n, 2)
        A point inside each atom (metres).
    area, perimeter : ndarray of float
        m² and m; perimeter includes holes.
    contig : ndarray (k, 2) of int64
        Pairs ``i < j`` that may join in one grid: a shared edge of at least ``MIN_SHARED_M`` m not
        cut by a barrier.
    touch : ndarray (t, 2) of int64, touch_len : ndarray (t,)
        Every pair ``i < j`` sharing boundary, and the shared length in metres (barriers ignored);
        the perimeter of a union of atoms is ``Σ perimeter − 2 Σ touch_len`` over its internal pairs.
    source : ndarray of int64
        H3 cell (as int) or building row the atom comes from; -1 for pieces carrying no source.
    """

    geoms: np.ndarray
    weight: np.ndarray
    xy: np.ndarray
    area: np.ndarray
    perimeter: np.ndarray
    contig: np.ndarray
    touch: np.ndarray
    touch_len: np.ndarray
    source: np.ndarray

    @property
    def contiguity(self) -> sparse.csr_matrix:
        """Symmetric 0/1 contiguity matrix (scipy CSR)."""
        n = len(self.geoms)
        i, j = self.contig[:, 0], self.contig[:, 1]
        return sparse.coo_matrix((np.ones(2 * len(i), dtype=np.int8), (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()

    @property
    def shared(self) -> sparse.csr_matrix:
        """Symmetric shared-boundary-length matrix in metres (scipy CSR)."""
        n = len(self.geoms)
        i, j = self.touch[:, 0], self.touch[:, 1]
        return sparse.coo_matrix((np.r_[self.touch_len, self.touch_len], (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()

    def __len__(self) -> int:
        return len(self.geoms)


def choose_h3_res(households: int, area_m2: float, band_min: int, res_range: tuple[int, int] = (10, 11)) -> int:
    """H3 resolution for a region from its density: the coarsest in ``res_range`` fine enough.

    A cell should hold on average at most ``band_min / 25`` households (12 for urban grids) so that
    grids can be balanced to within a few percent; res 10 cells are ~15,000 m², res 11 ~2,150 m².
    """
    lo, hi = res_range
    if households <= 0 or area_m2 <= 0:
        return lo
    for res in range(lo, hi + 1):
        per_cell = households / area_m2 * h3.average_hexagon_area(res, unit="m^2")
        if per_cell <= band_min / 25.0:
            return res
    return hi


def _explode(pieces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polygon parts of each geometry and the index of the geometry each part came from."""
    parts, idx = shapely.get_parts(pieces, return_index=True)
    keep = (shapely.get_type_id(parts) == 3) & ~shapely.is_empty(parts)
    parts, idx = parts[keep], idx[keep]
    keep = shapely.area(parts) > 0
    return parts[keep], idx[keep]


def _snap(geoms: np.ndarray) -> np.ndarray:
    """Coordinates rounded to the 1 mm grid (cheaper than GEOS set_precision; shapes are metres wide)."""
    # Same arithmetic as GEOS's fixed precision model (round(x·scale)/scale), so snapped and
    # overlay-clipped atoms carry bit-identical shared vertices.
    scale = 1.0 / PRECISION_M
    return shapely.transform(geoms, lambda c: np.round(c * scale) / scale)


def _clip(geoms: np.ndarray, region) -> np.ndarray:
    """Geometries intersected with the region on the 1 mm grid (``_explode`` keeps the polygons).

    Only geometries crossing the region's boundary go through GEOS overlay; the others are snapped.
    """
    geoms = np.asarray(geoms, dtype=object)
    shapely.prepare(region)
    inside = shapely.contains_properly(region, geoms)
    out = np.empty(len(geoms), dtype=object)
    out[inside] = _snap(geoms[inside])
    out[~inside] = _snap(shapely.intersection(geoms[~inside], region))
    return out


def locate_points(points_xy: np.ndarray, geoms, nearest: bool = True) -> np.ndarray:
    """Index of the geometry containing each point (metric CRS); the smallest index on shared edges.

    Points in no geometry get the nearest geometry when ``nearest`` (default), else -1.
    """
    xy = np.asarray(points_xy, dtype=float).reshape(-1, 2)
    geoms = np.asarray(geoms, dtype=object)
    out = np.full(len(xy), -1, dtype=np.int64)
    if not len(xy) or not len(geoms):
        return out
    tree = shapely.STRtree(geoms)
    pts = np.asarray(shapely.points(xy), dtype=object)  # an array even for one point
    pidx, gidx = tree.query(pts, predicate="intersects")
    if len(pidx):
        order = np.lexsort((gidx, pidx))
        pidx, gidx = pidx[order], gidx[order]
        first = np.r_[True, pidx[1:] != pidx[:-1]]
        out[pidx[first]] = gidx[first]
    if nearest and (out < 0).any():
        missing = np.flatnonzero(out < 0)
        out[missing] = tree.query_nearest(pts[missing], all_matches=False)[1]
    return out


def _shared_edges(geoms: np.ndarray, verify: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``i < j`` of atoms sharing boundary, with the shared length in metres.

    Fast path: on the 1 mm grid, neighbouring atoms carry identical segments, so boundary segments
    are hashed by their integer end points and matched. Pairs the STRtree finds touching but with
    no matched segment (a vertex on one side only, a T-junction) are measured with GEOS; ``verify``
    False skips that (Voronoi territories share whole ridges, so the hash finds every edge).
    """
    n = len(geoms)
    rings, ring_atom = shapely.get_rings(geoms, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    same = ring_of[1:] == ring_of[:-1]
    a = np.round(coords[:-1][same] / PRECISION_M).astype(np.int64)
    b = np.round(coords[1:][same] / PRECISION_M).astype(np.int64)
    seg_atom = ring_atom[ring_of[:-1][same]]
    swap = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1]))
    lo = np.where(swap[:, None], b, a)
    hi = np.where(swap[:, None], a, b)
    keys = np.column_stack([lo, hi])
    order = np.lexsort(keys.T[::-1])
    keys, seg_atom = keys[order], seg_atom[order]
    lo, hi = lo[order], hi[order]
    eq = np.all(keys[1:] == keys[:-1], axis=1) & (seg_atom[1:] != seg_atom[:-1])
    k = np.flatnonzero(eq)
    pi, pj = seg_atom[k], seg_atom[k + 1]
    seg_len = np.hypot(*(hi[k] - lo[k]).T.astype(float)) * PRECISION_M
    ii, jj = np.minimum(pi, pj), np.maximum(pi, pj)
    key, inv = np.unique(ii * n + jj, return_inverse=True)
    length = np.bincount(inv.ravel(), weights=seg_len, minlength=len(key))
    ci = cj = np.zeros(0, dtype=np.int64)
    if verify:
        ci, cj = shapely.STRtree(geoms).query(geoms, predicate="intersects")
        keep = ci < cj
        ci, cj = ci[keep], cj[keep]
    miss = ~np.isin(ci * n + cj, key)
    ui, uj = ci[miss], cj[miss]
    if len(ui):
        extra = shapely.length(shapely.intersection(shapely.boundary(geoms[ui]), shapely.boundary(geoms[uj])))
        key = np.r_[key, ui * n + uj]
        length = np.r_[length, extra]
    touch = length >= MIN_SHARED_M
    return (key[touch] // n).astype(np.int64), (key[touch] % n).astype(np.int64), length[touch]


def build_graph(geoms: np.ndarray, xy: np.ndarray, barriers=None, verify: bool = True):
    """Contiguous pairs, touching pairs and shared lengths for atoms tiling a region (see ``Atoms``).

    A pair is cut by a barrier (river, arterial road: lines in the same metric CRS) when the segment
    joining the two atoms' inner points crosses a barrier line.

    Returns
    -------
    contig : (k, 2) int64, touch : (t, 2) int64, touch_len : (t,) float (metres)
    """
    if len(geoms) == 0:
        z = np.zeros((0, 2), dtype=np.int64)
        return z, z, np.zeros(0)
    i, j, length = _shared_edges(geoms, verify)
    ok = np.ones(len(i), dtype=bool)
    if barriers is not None and len(i):
        lines = np.asarray([b for b in np.asarray(barriers, dtype=object).ravel() if b is not None and not b.is_empty],
                           dtype=object)
        if len(lines):
            segs = shapely.linestrings(np.stack([xy[i], xy[j]], axis=1))
            hit, _ = shapely.STRtree(lines).query(segs, predicate="intersects")
            ok[np.unique(hit)] = False
    touch = np.column_stack([i, j]).astype(np.int64)
    return touch[ok], touch, length


def _finish(parts, weight, source, barriers, verify: bool = True) -> Atoms:
    xy_pts = shapely.point_on_surface(parts)
    xy = shapely.get_coordinates(xy_pts)
    contig, touch, touch_len = build_graph(parts, xy, barriers, verify)
    return Atoms(
        geoms=parts,
        weight=np.asarray(weight, dtype=np.int64),
        xy=xy,
        area=shapely.area(parts),
        perimeter=shapely.length(parts),
        contig=contig,
        touch=touch,
        touch_len=touch_len,
        source=np.asarray(source, dtype=np.int64),
    )


def h3_atoms(region, crs, households_xy: np.ndarray, res: int, barriers=None) -> tuple[Atoms, np.ndarray]:
    """H3-cell atoms of a region and the atom of each household.

    Parameters
    ----------
    region : shapely Polygon or MultiPolygon
        The region in the metric CRS ``crs`` (metres).
    crs : str or pyproj.CRS
        Metric CRS of ``region``, ``households_xy`` and ``barriers``.
    households_xy : ndarray (m, 2)
        Household points (metres) inside the region; each counts 1.
    res : int
        H3 resolution (10: ~15,000 m² cells, 11: ~2,150 m²).
    barriers : array of shapely lines, optional
        Rivers, arterial roads (metres) that cut adjacency.

    Returns
    -------
    (Atoms, ndarray of int64)
        The atoms and, per household, the index of its atom.
    """
    region = shapely.set_precision(region, PRECISION_M)
    to_wgs = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    to_m = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    region_wgs = shapely.transform(region, lambda c: np.column_stack(to_wgs.transform(c[:, 0], c[:, 1])))
    cells: set[str] = set()
    for part in getattr(region_wgs, "geoms", [region_wgs]):
        if part.is_empty:
            continue
        cells.update(h3.h3shape_to_cells_experimental(h3.geo_to_h3shape(part), res, contain="overlap"))
    if not cells:
        p = region_wgs.representative_point()
        cells.add(h3.latlng_to_cell(p.y, p.x, res))
    cell_ids = sorted(cells)
    polys = np.array(
        [Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(c)]) for c in cell_ids], dtype=object
    )
    polys = shapely.transform(polys, lambda c: np.column_stack(to_m.transform(c[:, 0], c[:, 1])))
    parts, idx = _explode(_clip(polys, region))
    source = np.array([h3.str_to_int(cell_ids[k]) for k in idx], dtype=np.int64)
    # H3's "overlap" polyfill can miss cells along thin parts of a polygon: whatever the cells
    # leave uncovered becomes atoms of its own, so the atoms always tile the region.
    if abs(shapely.area(parts).sum() - shapely.area(region)) > 1e-3:
        gap = _snap(shapely.difference(region, shapely.union_all(parts), grid_size=PRECISION_M))
        extra, _ = _explode(np.array([gap], dtype=object))
        if len(extra):
            parts = np.concatenate([parts, extra])
            source = np.concatenate([source, np.full(len(extra), -1, dtype=np.int64)])
    hh_atom = locate_points(np.asarray(households_xy, dtype=float).reshape(-1, 2), parts)
    weight = np.bincount(hh_atom[hh_atom >= 0], minlength=len(parts))
    return _finish(parts, weight, source, barriers), hh_atom


def building_atoms(
    region, building_points: np.ndarray, building_weight: np.ndarray, band_max: int, barriers=None
) -> tuple[Atoms, np.ndarray]:
    """Building atoms of a region: Voronoi territories of the buildings, clipped to the region.

    Parameters
    ----------
    region : shapely Polygon or MultiPolygon
        Region in a metric CRS (metres).
    building_points : ndarray (b, 2)
        Representative point of each building inside the region (metres).
    building_weight : ndarray (b,)
        Households per building.
    band_max : int
        A building with more households than this is split, the one case where a building is: it
        gets ``ceil(w / band_max)`` Voronoi seeds sharing its households evenly.
    barriers : array of shapely lines, optional
        Rivers, arterial roads (metres) that cut adjacency.

    Returns
    -------
    (Atoms, ndarray of int64)
        The atoms and, per building, the index of its (first) atom.
    """
    region = shapely.set_precision(region, PRECISION_M)
    pts = np.asarray(building_points, dtype=float).reshape(-1, 2)
    wts = np.asarray(building_weight, dtype=np.int64)
    b = len(pts)
    if b == 0:
        parts, _ = _explode(np.array([region], dtype=object))
        finished = _finish(parts, np.zeros(len(parts), dtype=np.int64), np.full(len(parts), -1), barriers)
        return finished, np.zeros(0, dtype=np.int64)
    # A building above band_max gets ceil(w / band_max) seeds 2 m apart (east-west) sharing its
    # households evenly: its territory is then cut by true Voronoi ridges, which keeps the tiling exact.
    m = np.maximum(1, -(-wts // max(band_max, 1)))
    bld = np.repeat(np.arange(b), m)
    k = np.arange(len(bld)) - np.repeat(np.cumsum(m) - m, m)
    seed_pts = pts[bld] + np.column_stack([(k - (m[bld] - 1) / 2.0) * 2.0, np.zeros(len(bld))])
    seed_w = wts[bld] // m[bld] + (k < wts[bld] % m[bld])
    # Buildings sharing a point (duplicates) share one Voronoi seed.
    key = np.round(seed_pts / PRECISION_M).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    seeds = seed_pts[first]
    if len(seeds) == 1:
        cells = np.array([region], dtype=object)
    else:
        vor = shapely.voronoi_polygons(MultiPoint(seeds), extend_to=region, ordered=True)
        cells = np.asarray(shapely.get_parts(vor), dtype=object)
    parts, idx = _explode(_clip(cells, region))
    weight_of_seed = np.bincount(inverse, weights=seed_w, minlength=len(seeds)).astype(np.int64)
    # The part of a Voronoi cell containing its seed carries the weight; other parts (a concave
    # region can cut a cell in two) are empty atoms.
    owner = locate_points(seeds, parts)
    weight = np.zeros(len(parts), dtype=np.int64)
    source = np.full(len(parts), -1, dtype=np.int64)
    np.add.at(weight, owner, weight_of_seed)
    source[owner] = bld[first]
    atoms = _finish(parts, weight, source, barriers, verify=False)
    first_seed = np.cumsum(m) - m
    return atoms, owner[inverse[first_seed]]


#: Footprints whose 1 mm margins meet are one building: a grid boundary between them could not be
#: drawn on the 1 mm grid without cutting one of them by a sliver.
CLAIM_MARGIN_M = PRECISION_M
#: Tessellation seeds: footprint boundaries pulled in by this much (metres), one seed every
#: ``sqrt(area) / SEEDS_PER_SIDE`` metres (at least ``MIN_SEED_SPACING_M``) along them.
SHRINK_M = 0.4
SEEDS_PER_SIDE = 3.0
MIN_SEED_SPACING_M = 2.0


def _groups(shapes: np.ndarray, predicate: Literal["intersects", "touches"]) -> np.ndarray:
    """Connected components of the shapes under an STRtree predicate (a group index per shape)."""
    from scipy.sparse import csgraph

    n = len(shapes)
    left, right = shapely.STRtree(shapes).query(shapes, predicate=predicate)
    return csgraph.connected_components(sparse.coo_matrix((np.ones(len(left)), (left, right)), shape=(n, n)),
                                        directed=False)[1]


def _union_by_group(shapes: np.ndarray, group: np.ndarray) -> np.ndarray:
    """One union per group index 0..max (1 mm grid); shapes alone in their group are kept as they are."""
    if len(np.unique(group)) == len(shapes):
        out = np.empty(len(shapes), dtype=object)
        out[group] = shapes
        return out
    return np.array([shapely.union_all(shapes[group == g], grid_size=PRECISION_M) for g in range(group.max() + 1)],
                    dtype=object)


def _claims(footprints: np.ndarray, big: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ground each building claims (metres, 1 mm grid, claims disjoint) and, per footprint, its claim.

    A building within the band claims its footprint grown by ``CLAIM_MARGIN_M``, so the snapped claim
    still holds the exact footprint; such footprints whose claims meet (overlapping, touching, closer
    than 2 mm) are one building, since no 1 mm grid boundary could pass between them. A building
    above the band (``big``), sliced anyway, claims its footprint less its neighbours' claims, so it
    never swallows a smaller neighbour; big footprints that meet are merged.
    """
    grown = shapely.set_precision(shapely.make_valid(
        shapely.buffer(footprints, CLAIM_MARGIN_M, join_style="mitre", mitre_limit=2.0)), PRECISION_M)
    small = np.flatnonzero(~big)
    large = np.flatnonzero(big)
    group = np.zeros(len(footprints), dtype=np.int64)
    small_claims = np.zeros(0, dtype=object)
    if len(small):
        group[small] = _groups(grown[small], "intersects")
        small_claims = _union_by_group(grown[small], group[small])
    claims = small_claims
    if len(large):
        snapped = shapely.set_precision(footprints[large], PRECISION_M)
        large_group = _groups(snapped, "intersects")
        large_claims = _union_by_group(snapped, large_group)
        if len(small_claims):
            near, taken = shapely.STRtree(small_claims).query(large_claims, predicate="intersects")
            for i in np.unique(near):
                large_claims[i] = shapely.difference(large_claims[i], shapely.union_all(small_claims[taken[near == i]],
                                                     grid_size=PRECISION_M), grid_size=PRECISION_M)
        group[large] = large_group + len(small_claims)
        claims = np.concatenate([small_claims, large_claims])
    return claims, group


def _seeds(claims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tessellation seeds (metres) and the claim each comes from: points along each claim's boundary
    pulled in by ``SHRINK_M``, spaced by the claim's size (a claim too thin to pull in gives its inner point)."""
    inner = shapely.buffer(claims, -SHRINK_M, join_style="mitre")
    thin = shapely.is_empty(inner) | (shapely.area(inner) <= 0)
    spacing = np.maximum(MIN_SEED_SPACING_M, np.sqrt(shapely.area(claims)) / SEEDS_PER_SIDE)
    lines = inner.copy()
    lines[thin] = shapely.point_on_surface(claims[thin])
    if (~thin).any():
        lines[~thin] = shapely.segmentize(shapely.boundary(inner[~thin]), spacing[~thin])
    xy, owner = shapely.get_coordinates(lines, return_index=True)
    # Qhull needs distinct points; a ring's closing point repeats its first.
    _, first = np.unique(np.round(xy / PRECISION_M).astype(np.int64), axis=0, return_index=True)
    return xy[first], owner[first]


def _tessellate(region, claims: np.ndarray) -> np.ndarray:
    """Morphological tessellation of the region by the claims: Voronoi cells of seeds along each claim
    dissolved per claim (metres). The dissolve keeps only the Voronoi ridges between seeds of two
    different claims and polygonizes them, one pass instead of one union per building.

    Returns per claim its cell (Polygon/MultiPolygon, not yet clipped to the region; empty if none).
    """
    from scipy.spatial import Voronoi

    xy, owner = _seeds(claims)
    x0, y0, x1, y1 = region.bounds
    reach = 3.0 * (max(x1 - x0, y1 - y0) + 1000.0)
    centre = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])
    # Four far corners close every cell that reaches the region, so all ridges needed are finite.
    corners = centre + reach * np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    label = np.r_[owner, -1, -2, -3, -4]
    vor = Voronoi(np.vstack([xy, corners]))
    ridge_points, ridge_vertices = vor.ridge_points, np.asarray(vor.ridge_vertices)
    between = (label[ridge_points[:, 0]] != label[ridge_points[:, 1]]) & (ridge_vertices >= 0).all(axis=1)
    ends = vor.vertices[ridge_vertices[between]]
    faces = np.asarray(shapely.get_parts(shapely.polygonize(shapely.linestrings(ends))), dtype=object)
    face_of_seed = locate_points(xy, faces, nearest=False)
    found = face_of_seed >= 0
    face_owner = np.full(len(faces), -1, dtype=np.int64)
    face_owner[face_of_seed[found]] = owner[found]
    cells = np.array([shapely.Polygon()] * len(claims), dtype=object)
    for claim in np.unique(face_owner[face_owner >= 0]):
        mine = faces[face_owner == claim]
        cells[claim] = mine[0] if len(mine) == 1 else shapely.union_all(mine)
    return cells


def _grown_territories(region, claims: np.ndarray) -> np.ndarray:
    """Territory of each claim: its tessellation cell joined with the claim and cleared of every other
    claim, clipped to the region on the 1 mm grid, so each claim lies whole in its own territory and
    territories never overlap (metres)."""
    cells = _tessellate(region, claims) if len(claims) > 1 else np.array([region], dtype=object)
    territory = _clip(cells, region)
    # Most cells already hold their claim whole; the overlay is needed only for the others.
    shapely.prepare(territory)
    spill = ~shapely.contains(territory, claims)
    territory[spill] = shapely.union(territory[spill], claims[spill], grid_size=PRECISION_M)
    cell_idx, claim_idx = shapely.STRtree(claims).query(territory, predicate="intersects")
    other = cell_idx != claim_idx
    for i in np.unique(cell_idx[other]):
        others = claims[claim_idx[other & (cell_idx == i)]]
        territory[i] = shapely.difference(territory[i], shapely.union_all(others, grid_size=PRECISION_M),
                                          grid_size=PRECISION_M)
    return territory


def _slices(part, cuts) -> list:
    """Polygon pieces of ``part`` between consecutive west-to-east cut abscissas (metres)."""
    x0, y0, x1, y1 = part.bounds
    edges = np.r_[x0 - 1.0, np.asarray(cuts, dtype=float), x1 + 1.0]
    pieces: list = []
    for a, b in pairwise(edges):
        cut, _ = _explode(np.array([shapely.intersection(part, shapely.box(a, y0 - 1, b, y1 + 1), grid_size=PRECISION_M)],
                                   dtype=object))
        pieces.extend(cut)
    return pieces


def _cuts_by_households(x: np.ndarray, pieces: int) -> np.ndarray:
    """Cut abscissas leaving ``len(x) / pieces`` household points (x in metres) in each slice, rounded."""
    x = np.sort(x)
    at = np.clip((np.arange(1, pieces) * len(x)) // pieces, 1, max(len(x) - 1, 1))
    return (x[at - 1] + x[at]) / 2.0


def _cuts_by_ground(footprints: np.ndarray, households: np.ndarray, bounds, pieces: int) -> np.ndarray:
    """Cut abscissas giving each slice an equal share of households when no household points are
    given: a building's households are taken as spread evenly over its footprint (metres)."""
    x0, y0, x1, y1 = bounds
    area = np.maximum(shapely.area(footprints), 1e-12)

    def west_of(x: float) -> float:
        return float((households * shapely.area(shapely.intersection(footprints, shapely.box(x0 - 1, y0 - 1, x, y1 + 1)))
                      / area).sum())

    total, cuts = float(households.sum()), []
    for k in range(1, pieces):
        lo, hi = x0, x1
        for _ in range(40):  # bisection to ~1e-12 of the width
            mid = (lo + hi) / 2.0
            lo, hi = (mid, hi) if west_of(mid) < total * k / pieces else (lo, mid)
        cuts.append((lo + hi) / 2.0)
    return np.array(cuts)


def _ground_share(pieces: list, footprints: np.ndarray, households: np.ndarray) -> np.ndarray:
    """Whole households per piece in proportion to the footprint ground each holds (largest remainder)."""
    area = np.maximum(shapely.area(footprints), 1e-12)
    exact = np.array([(households * shapely.area(shapely.intersection(footprints, p)) / area).sum() for p in pieces])
    whole = np.floor(exact).astype(np.int64)
    short = round(float(households.sum())) - int(whole.sum())
    whole[np.argsort(-(exact - whole), kind="stable")[:max(short, 0)]] += 1
    return whole


def _slice_by_points(part, xy: np.ndarray, band_max: int) -> list:
    """``part`` cut west to east into ``ceil(n / band_max)`` slices of equal household points (metres)."""
    inside = xy[shapely.contains_xy(part, xy[:, 0], xy[:, 1]), 0]
    pieces = max(1, -(-len(inside) // max(band_max, 1)))
    return _slices(part, _cuts_by_households(inside, pieces)) if pieces > 1 else [part]


def _slice_around_claim(part, claim, xy: np.ndarray, band_max: int) -> list:
    """Pieces of an atom above the band whose building is within it: the building's ground (``claim``)
    whole as one piece, the open ground around it sliced by its household points (metres)."""
    held = shapely.intersection(part, claim, grid_size=PRECISION_M)
    inside = shapely.contains_xy(held, xy[:, 0], xy[:, 1]).sum() if not held.is_empty else band_max + 1
    if inside > band_max:
        return _slice_by_points(part, xy, band_max)
    ground, _ = _explode(np.array([shapely.difference(part, held, grid_size=PRECISION_M)], dtype=object))
    building, _ = _explode(np.array([held], dtype=object))
    return list(building) + [piece for g in ground for piece in _slice_by_points(g, xy, band_max)]


def _split_oversize(parts, source, weight, band_max: int, households_xy, claims, feet, feet_households):
    """Atoms holding more than ``band_max`` households cut into pieces of at most about ``band_max``
    (metres); a building is split only when it alone holds more than ``band_max``.

    With household points, an atom whose building is within the band keeps the building whole as one
    piece and slices the open ground around it; otherwise the atom is cut west to east between points
    into ``ceil(w / band_max)`` slices of equal households. Without points a building's households are
    taken as spread evenly over its footprint and each slice gets its share of them. Returns the
    pieces, their sources and, without points, their households.
    """
    out_parts, out_source, out_weight = [], [], []
    for part, src, w in zip(parts, source, weight):
        pieces = max(1, -(-int(w) // max(band_max, 1)))
        if pieces == 1:
            out_parts.append(part)
            out_source.append(src)
            out_weight.append(int(w))
            continue
        if households_xy is not None:
            cut = _slice_around_claim(part, claims[src], households_xy, band_max) if src >= 0 else \
                _slice_by_points(part, households_xy, band_max)
            share = [0] * len(cut)
        else:
            mine = feet[src] if src >= 0 else np.zeros(0, dtype=object)
            cut = _slices(part, _cuts_by_ground(mine, feet_households[src], part.bounds, pieces))
            share = list(_ground_share(cut, mine, feet_households[src]))
        out_parts.extend(cut)
        out_source.extend([src] * len(cut))
        out_weight.extend(share)
    return np.array(out_parts, dtype=object), np.array(out_source, dtype=np.int64), np.array(out_weight, dtype=np.int64)


def _above_band(feet: np.ndarray, households: np.ndarray, households_xy, band_max: int) -> np.ndarray:
    """Which footprints hold more than ``band_max`` households: by their household points when given
    (points inside the footprint), else by their count."""
    if households_xy is not None and len(households_xy):
        _, foot_idx = shapely.STRtree(feet).query(shapely.points(households_xy), predicate="intersects")
        households = np.bincount(foot_idx, minlength=len(feet))
    return np.asarray(households) > band_max


def footprint_atoms(region, footprints, band_max: int, households_xy=None, building_weight=None,
                    barriers=None) -> tuple[Atoms, np.ndarray]:
    """Building atoms grown from the footprints: each building lies whole inside one atom.

    Parameters
    ----------
    region : shapely Polygon or MultiPolygon
        Region in a metric CRS (metres).
    footprints : array of shapely polygons
        Building footprints (metres); only their part inside the region counts. Footprints that
        overlap, touch or lie within 2 mm of each other are one building (no 1 mm grid boundary
        could pass between them).
    band_max : int
        An atom with more households than this is cut into west-to-east slices of equal households
        (the one case where a building is split).
    households_xy : ndarray (m, 2), optional
        Household points (metres); atoms count the households they contain, so counts always equal
        a point-in-polygon recount.
    building_weight : ndarray (b,), optional
        Households per building, used when no household points are given; a sliced building's
        households are shared among its slices by footprint area.
    barriers : array of shapely lines, optional
        Rivers, arterial roads (metres) that cut adjacency.

    Returns
    -------
    (Atoms, ndarray of int64)
        The atoms and, per building, the index of the atom holding (the inner point of) it; -1 for a
        building with no ground in the region.
    """
    region = shapely.set_precision(region, PRECISION_M)
    n_buildings = len(np.asarray(footprints))
    clipped = np.asarray(_clip(np.asarray(footprints, dtype=object), region), dtype=object)
    present = np.flatnonzero(~shapely.is_empty(clipped) & (shapely.area(clipped) > 0))
    feet = shapely.make_valid(clipped[present])
    weights = np.zeros(n_buildings) if building_weight is None else np.asarray(building_weight, dtype=float)
    xy = np.asarray(households_xy, dtype=float).reshape(-1, 2) if households_xy is not None else None
    big = _above_band(feet, weights[present], xy, band_max)
    claims, group = _claims(feet, big) if len(present) else (np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64))
    territory = _grown_territories(region, claims) if len(claims) else np.zeros(0, dtype=object)
    parts, idx = _explode(_clip(territory, region)) if len(claims) else (np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64))
    gap = np.zeros(0, dtype=object)
    # Rounding to the 1 mm grid can leave slivers uncovered; the union that finds them is costly, so
    # it runs only when the areas say something is missing.
    if abs(shapely.area(parts).sum() - shapely.area(region)) > 1e-3:
        covered = shapely.union_all(parts, grid_size=PRECISION_M) if len(parts) else shapely.Polygon()
        gap, _ = _explode(np.array([shapely.difference(region, covered, grid_size=PRECISION_M)], dtype=object))
    parts, source = np.concatenate([parts, gap]), np.r_[idx, np.full(len(gap), -1)].astype(np.int64)
    members = [np.flatnonzero(group == g) for g in range(len(claims))]
    group_feet = [feet[m] for m in members]
    group_households = [weights[present[m]] for m in members]
    building_atom = np.full(n_buildings, -1, dtype=np.int64)
    if len(present):
        inner = shapely.get_coordinates(shapely.point_on_surface(clipped[present]))
        building_atom[present] = locate_points(inner, parts)
    if xy is not None:
        weight = np.bincount(locate_points(xy, parts), minlength=len(parts)) if len(xy) else np.zeros(len(parts), dtype=np.int64)
    else:
        weight = np.bincount(building_atom[present], weights=weights[present], minlength=len(parts)).astype(np.int64)
    if (weight > band_max).any():
        parts, source, sliced = _split_oversize(parts, source, weight, band_max, xy, claims, group_feet, group_households)
        if len(present):
            building_atom[present] = locate_points(inner, parts)
        weight = np.bincount(locate_points(xy, parts), minlength=len(parts)) if xy is not None and len(xy) else sliced
    return _finish(parts, weight, source, barriers), building_atom
