"""Geometry helpers of the redraw: polygonal parts of overlays, unions of atoms, barriers, empty pieces.

Everything in the community's metric CRS (metres), on the 1 mm precision grid of ``gridmap.atoms``.
"""

from __future__ import annotations

import numpy as np
import shapely

from gridmap.atoms import PRECISION_M

#: Shared boundaries shorter than this (metres) count as a corner touch when attaching pieces.
MIN_SHARED_M = 0.01


def polygonal(geom):
    """The polygonal part of an overlay result (drops the lines and points a touching overlay adds)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    polys = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and not p.is_empty]
    return shapely.multipolygons(polys) if len(polys) > 1 else (polys[0] if polys else shapely.Polygon())


def union_atoms(geoms) -> shapely.Geometry:
    """Union of atoms (metres).

    Atoms share identical edges on the 1 mm grid, so the fast coverage union is exact; if GEOS
    disagrees (area off by more than 1 m² or invalid) the overlay union is used.
    """
    geoms = np.asarray(geoms, dtype=object)
    try:
        union = shapely.coverage_union_all(geoms)
    except shapely.errors.GEOSException:  # a T-junction left by clipping: not a clean coverage
        union = None
    if (union is not None and shapely.is_valid(union) and union.geom_type in ("Polygon", "MultiPolygon")
            and abs(shapely.area(union) - shapely.area(geoms).sum()) <= 1.0):
        return union
    return shapely.union_all(geoms, grid_size=PRECISION_M)


def barrier_lines(barriers, crs) -> np.ndarray | None:
    """Barrier lines in ``crs`` (metres) from GeoDataFrames of lines or polygons (their outline)."""
    if barriers is None:
        return None
    frames = barriers if isinstance(barriers, (list, tuple)) else [barriers]
    lines = []
    for frame in frames:
        if frame is None or len(frame) == 0:
            continue
        geoms = frame.to_crs(crs).geometry
        geoms = geoms.where(~geoms.geom_type.isin(["Polygon", "MultiPolygon"]), geoms.boundary)
        lines.extend(shapely.get_parts(geoms.to_numpy()).tolist())
    return np.asarray(lines, dtype=object) if lines else None


def attach_piece(grids: list, piece, community_code: str, issues: list, status_new: str) -> None:
    """Give an empty piece of the community to the grid it shares most boundary with (else nearest).

    ``grids`` are the community's grid drafts (dicts with ``geoms``, ``code``); a detached piece of
    1 m² or more is reported in ``issues``.
    """
    if not grids:
        grids.append({"gid": -1, "code": None, "geoms": [piece], "status": status_new, "households": 0})
        return
    best, best_key = None, None
    for grid in grids:
        outline = union_atoms(grid["geoms"]) if len(grid["geoms"]) > 1 else grid["geoms"][0]
        shared_m = shapely.length(shapely.intersection(shapely.boundary(piece), shapely.boundary(outline)))
        key = (-shared_m if shared_m >= MIN_SHARED_M else 0.0, shapely.distance(piece, outline))
        if best_key is None or key < best_key:
            best, best_key = grid, key
    assert best is not None and best_key is not None  # grids is not empty (handled above)
    best["geoms"].append(piece)
    if best_key[0] == 0.0 and shapely.area(piece) >= 1.0:
        issues.append({"community_code": community_code, "kind": "multipart",
                       "message": f"an empty detached piece of {shapely.area(piece):.0f} m² "
                                  f"joins grid {best['code'] or '(new)'}"})
