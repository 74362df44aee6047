"""Components to solve (step 2 of the algorithm): islands whose total no in-band grids fit are joined.

A component of ``W`` households is infeasible when no ``k`` has ``k·band_min ≤ W ≤ k·band_max``
(fewer than ``band_min``, or e.g. 501–599 for urban grids). An island across a barrier is joined
through the barrier pair sharing most boundary with it; an island with no neighbour at all (a
detached part of a multi-part community) is joined to the nearest atom with households elsewhere
when exclaves are allowed (fresh redraw), else left as it is.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from gridmap.atoms import Atoms
from gridmap.districting.bands import grid_count
from gridmap.districting.graph import component_labels


def _infeasible_islands(atoms: Atoms, component, n_components, band_min, band_max, stuck: set) -> list:
    """Components (smallest first) with households whose total no in-band grids fit."""
    households = np.bincount(component, weights=atoms.weight, minlength=n_components)
    first_atom = np.full(n_components, len(atoms), dtype=np.int64)
    np.minimum.at(first_atom, component, np.arange(len(atoms)))
    return [(c, int(households[c]), int(first_atom[c])) for c in np.argsort(households, kind="stable")
            if 0 < households[c] and not grid_count(int(households[c]), band_min, band_max)[1]
            and int(first_atom[c]) not in stuck]


def _nearest_join(atoms: Atoms, component, island: int):
    """Closest pair (island atom, atom with households elsewhere) and its distance in metres; or None."""
    members = np.flatnonzero(component == island)
    others = np.flatnonzero((component != island) & (atoms.weight > 0))
    if not len(others):
        return None
    distance_m, nearest = cKDTree(atoms.xy[others]).query(atoms.xy[members])
    t = int(np.argmin(distance_m))
    return int(members[t]), int(others[nearest[t]]), float(distance_m[t])


def components_to_solve(atoms: Atoms, band_min: int, band_max: int, allow_exclaves: bool) -> tuple[np.ndarray, list[str]]:
    """Contiguity pairs plus virtual pairs so that no component has a total no grids can fit.

    Returns the (k, 2) pairs and notes for the report.
    """
    pairs = atoms.contig
    notes: list[str] = []
    n = len(atoms)
    stuck: set[int] = set()
    touch_a, touch_b, touch_len = atoms.touch[:, 0], atoms.touch[:, 1], atoms.touch_len
    for _ in range(n):
        n_components, component = component_labels(n, pairs[:, 0], pairs[:, 1])
        if n_components <= 1:
            break
        islands = _infeasible_islands(atoms, component, n_components, band_min, band_max, stuck)
        if not islands:
            break
        island, households, first_atom = islands[0]
        across = (component[touch_a] == island) != (component[touch_b] == island)
        if across.any():
            k = int(np.argmax(np.where(across, touch_len, -1.0)))
            a, b = int(touch_a[k]), int(touch_b[k])
        else:
            join = _nearest_join(atoms, component, island) if allow_exclaves else None
            if join is None:
                stuck.add(first_atom)
                continue
            a, b, distance_m = join
            notes.append(f"a detached part with {households} households is joined to the nearest part ({distance_m:.0f} m away)")
        pairs = np.vstack([pairs, [[min(a, b), max(a, b)]]])
    return pairs, notes
