"""Compactness of grid shapes: the Polsby-Popper score.

Polsby-Popper is ``4π·A / P²`` for area ``A`` (m²) and perimeter ``P`` (m): 1 for a disc, about
0.785 for a square, 0.60 for an H3 hexagon's 2:1 rectangle, towards 0 for long thin shapes. Areas
and perimeters must come from a metric CRS (metres, e.g. the local UTM zone), never from degrees.
"""

from __future__ import annotations

import numpy as np
import shapely


def polsby_popper_from_parts(area, perimeter) -> np.ndarray:
    """Polsby-Popper ``4πA/P²`` from areas (m²) and perimeters (m); 0 where the perimeter is 0."""
    area = np.asarray(area, dtype=float)
    perimeter = np.asarray(perimeter, dtype=float)
    out = np.zeros(np.broadcast(area, perimeter).shape, dtype=float)
    ok = perimeter > 0
    np.divide(4.0 * np.pi * area, perimeter * perimeter, out=out, where=ok)
    return out


def polsby_popper(geoms) -> np.ndarray:
    """Polsby-Popper score of each polygon (array-like of shapely geometries in a metric CRS, metres).

    Holes count towards the perimeter (shapely ``length`` includes interior rings), as they should:
    a grid wrapped around another one is not compact.
    """
    geoms = np.asarray(geoms, dtype=object)
    return polsby_popper_from_parts(shapely.area(geoms), shapely.length(geoms))
