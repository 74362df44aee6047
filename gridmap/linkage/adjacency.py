"""Neighbouring grids (相邻网格), for borrowing members across a grid border."""

from __future__ import annotations

from gridmap.metric import metric_crs


def grid_adjacency(grids, snap_m: float = 1.0, min_shared_m: float = 5.0) -> dict[str, set[str]]:
    """Neighbouring grids: pairs whose boundaries share at least ``min_shared_m`` metres.

    Parameters
    ----------
    grids : GeoDataFrame
        ``grid_code`` and polygons in WGS84 (EPSG:4326).
    snap_m : float
        Gap tolerance in metres: digitised neighbours rarely share vertices exactly, so a boundary
        counts as shared where it lies within ``snap_m`` of the other grid.
    min_shared_m : float
        Minimum shared boundary length in metres; grids touching only at a corner are not
        neighbours (a corner within ``snap_m`` yields at most ``2·√2·snap_m`` of "shared" boundary,
        so keep ``min_shared_m`` above that).

    Returns
    -------
    dict
        ``grid_code -> set of neighbouring grid_codes`` (symmetric; every grid is a key).
    """
    import shapely

    out: dict[str, set[str]] = {str(c): set() for c in grids["grid_code"]}
    if len(grids) < 2:
        return out
    projected = grids.to_crs(metric_crs(grids))
    geoms = projected.geometry.values
    left, right = projected.sindex.query(geoms, predicate="dwithin", distance=snap_m)
    keep = left < right
    left, right = left[keep], right[keep]
    if len(left) == 0:
        return out
    shared = shapely.length(shapely.intersection(shapely.boundary(geoms[left]),
                                                 shapely.buffer(geoms[right], snap_m)))
    codes = grids["grid_code"].astype(str).to_numpy()
    for a, b in zip(codes[left[shared >= min_shared_m]], codes[right[shared >= min_shared_m]]):
        if a != b:
            out[a].add(b)
            out[b].add(a)
    return out
