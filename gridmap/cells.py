"""H3 cells: points to cells, polygons to cell sets, cells back to polygons.

H3 indexes are handled as 64-bit integers (``numpy.uint64`` in memory; stored as signed BIGINT in
PostGIS, see ``to_signed`` / ``to_unsigned``). Coordinates are WGS84 degrees.
"""

from __future__ import annotations

import h3
import numpy as np
from shapely.geometry import MultiPolygon, Polygon

from gridmap.contract import H3_POINT_RES


def points_to_cells(lon, lat, res: int = H3_POINT_RES) -> np.ndarray:
    """H3 cell (uint64) of each WGS84 point (degrees) at resolution ``res``."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    out = np.empty(lon.shape[0], dtype=np.uint64)
    for i in range(lon.shape[0]):
        out[i] = h3.str_to_int(h3.latlng_to_cell(lat[i], lon[i], res))
    return out


def polygon_to_cells(geom, res: int = H3_POINT_RES) -> np.ndarray:
    """H3 cells (uint64) whose centres fall inside a WGS84 polygon or multipolygon.

    A polygon smaller than a cell contains no cell centre; it still gets the cell of its
    representative point, so that every grid owns at least one cell.
    """
    parts = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    cells: set[str] = set()
    for part in parts:
        if part.is_empty:
            continue
        shape = h3.LatLngPoly(
            [(y, x) for x, y in part.exterior.coords],
            *[[(y, x) for x, y in ring.coords] for ring in part.interiors],
        )
        cells.update(h3.polygon_to_cells(shape, res))
    if not cells and not geom.is_empty:
        p = geom.representative_point()
        cells.add(h3.latlng_to_cell(p.y, p.x, res))
    return np.array(sorted(h3.str_to_int(c) for c in cells), dtype=np.uint64)


def cell_polygon(cell) -> Polygon:
    """WGS84 polygon of one H3 cell (int or str)."""
    c = h3.int_to_str(int(cell)) if not isinstance(cell, str) else cell
    return Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(c)])


def to_signed(cells) -> np.ndarray:
    """uint64 H3 indexes as int64 (BIGINT); H3 indexes have the top bit clear, so values are unchanged."""
    return np.asarray(cells, dtype=np.uint64).astype(np.int64)


def to_unsigned(cells) -> np.ndarray:
    """int64 (BIGINT) H3 indexes back to uint64."""
    return np.asarray(cells, dtype=np.int64).astype(np.uint64)
