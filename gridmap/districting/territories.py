"""Atoms of the part of a community left to redraw: building territories or H3 cells (step 1).

Metres throughout (the community's UTM zone). See ``gridmap.atoms`` for the atoms themselves.
"""

from __future__ import annotations

import numpy as np
import shapely

from gridmap.atoms import (
    building_atoms,
    choose_h3_res,
    footprint_atoms,
    h3_atoms,
    locate_points,
)


def _share_oversize_households(atoms, unit_atom, unit_xy, building_position) -> None:
    """A building above the band's max has several territories (west to east): its households are
    shared among them evenly, west to east (in place)."""
    sources, counts = np.unique(atoms.source[atoms.source >= 0], return_counts=True)
    for building in sources[counts > 1]:
        parts = np.flatnonzero(atoms.source == building)
        parts = parts[np.argsort(atoms.xy[parts, 0], kind="stable")]
        rows = np.flatnonzero(building_position == building)
        rows = rows[np.argsort(unit_xy[rows, 0], kind="stable")]
        for part, chunk in zip(parts, np.array_split(rows, len(parts))):
            unit_atom[chunk] = part
    atoms.weight = np.bincount(unit_atom[unit_atom >= 0], minlength=len(atoms)).astype(np.int64)


def building_territories(city, leftover, buildings_left, unit_building, unit_xy, band_max):
    """Building atoms of ``leftover``, the atom of each unit and of each building left.

    ``unit_building``: per unit to draw, its building (-1 none); ``unit_xy`` its point (m).
    Returns ``(atoms, unit_atom, building_atom)``. Footprints give territories grown from them
    (each building whole in one atom; households counted by the atom containing them, so counts
    equal a point-in-polygon recount); points give Voronoi territories.
    """
    footprints = city.building_geoms[buildings_left]
    if (shapely.area(footprints) > 0).all():
        households_xy = unit_xy if city.n_households else None
        atoms, building_atom = footprint_atoms(leftover, footprints, band_max, households_xy,
                                               city.building_households[buildings_left], city.barriers)
        unit_atom = locate_points(unit_xy, atoms.geoms) if city.n_households else building_atom
        return atoms, unit_atom, building_atom
    atoms, building_atom = building_atoms(leftover, city.building_xy[buildings_left],
                                          city.building_households[buildings_left], band_max, city.barriers)
    position = np.full(len(city.building_xy), -1, dtype=np.int64)
    position[buildings_left] = np.arange(len(buildings_left))
    building_position = position[np.maximum(unit_building, 0)]
    unit_atom = np.where((unit_building >= 0) & (building_position >= 0), building_atom[np.maximum(building_position, 0)], -1)
    if city.n_households:
        _share_oversize_households(atoms, unit_atom, unit_xy, building_position)
    return atoms, unit_atom, building_atom


def cell_territories(city, leftover, unit_xy, unit_households, band_min, h3_res, h3_res_range):
    """H3-cell atoms of ``leftover`` (resolution from density unless ``h3_res``) and the atom of each unit."""
    res = h3_res or choose_h3_res(int(unit_households.sum()), shapely.area(leftover), band_min, h3_res_range)
    atoms, unit_atom = h3_atoms(leftover, city.crs, unit_xy, res, city.barriers)
    if not city.n_households:
        atoms.weight = np.bincount(unit_atom, weights=unit_households, minlength=len(atoms)).astype(np.int64)
    return atoms, unit_atom
