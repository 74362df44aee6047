"""Minimal change (step 6 of the algorithm): repair today's grids instead of drawing new ones.

Atoms start in the grid they are in today; groups are made contiguous, then repaired one at a time —
an under-size group merges with the neighbour that makes the pair feasible (the group with more
staying households keeps its code), an over-size one is bisected with the part holding most of its
households keeping the code — and the local search then takes, in this order: less band violation,
fewer moved households, more compactness. Also: which kept grids to release so that the leftover
between them can be brought into band.
"""

from __future__ import annotations

import numpy as np
import shapely

from gridmap.atoms import PRECISION_M, locate_points
from gridmap.districting.bands import band_violation, grid_count
from gridmap.districting.bisection import partition
from gridmap.districting.geometry import polygonal
from gridmap.districting.graph import AtomGraph, fill_labels
from gridmap.districting.local_search import improve


class _Labels:
    """Group ids of the atoms of one component, with a counter for new ids."""

    def __init__(self, today: np.ndarray, next_id: int):
        self.ids = today.astype(np.int64).copy()
        self.next_id = next_id

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _start_from_today(graph: AtomGraph, labels: _Labels) -> None:
    """Unlabelled atoms join the neighbour they share most boundary with; each group is made
    contiguous (its heaviest piece keeps the id)."""
    fill_labels(labels.ids, *graph.touch_both_ways())
    if (labels.ids < 0).any():
        labels.ids[labels.ids < 0] = labels.new_id()
    for group in np.unique(labels.ids):
        members = np.flatnonzero(labels.ids == group)
        n_pieces, piece = graph.components(members)
        if n_pieces > 1:
            main = int(np.argmax(np.bincount(piece, weights=graph.households[members], minlength=n_pieces)))
            for p in range(n_pieces):
                if p != main:
                    labels.ids[members[piece == p]] = labels.new_id()


def _staying(group: int, members, today: np.ndarray, stay_households: np.ndarray) -> int:
    """Households of ``members`` that are in ``group`` today."""
    return int(stay_households[members][today[members] == group].sum())


def _split_group(graph, labels: _Labels, group: int, members, k: int, today, stay_households, stuck: set) -> None:
    """Bisect ``group`` into ``k``; the part holding most of today's households keeps the id."""
    parts = partition(graph, members, k)
    keeper = int(np.argmax([_staying(group, p, today, stay_households) * 1e6 + graph.households[p].sum() for p in parts]))
    for i, part in enumerate(parts):
        labels.ids[part] = group if i == keeper else labels.new_id()
    if any(band_violation(graph.households[p].sum(), graph.band_min, graph.band_max) > 0 for p in parts):
        stuck.update(int(x) for x in np.unique(labels.ids[members]))


def _merge_group(graph, labels: _Labels, group: int, members, neighbours, today, stay_households) -> None:
    """Merge ``group`` with the neighbour that makes the pair feasible (least violation, then the
    smaller side, then the longest shared boundary); more staying households keep their id."""
    group_households = int(graph.households[members].sum())
    touch_from, touch_to, shared_len = graph.touch_both_ways()
    best = None
    for other in neighbours:
        other_members = np.flatnonzero(labels.ids == other)
        together = group_households + int(graph.households[other_members].sum())
        k, ok = grid_count(together, graph.band_min, graph.band_max)
        violation = 0 if ok else max(0, k * graph.band_min - together, together - k * graph.band_max)
        shared = float(shared_len[(labels.ids[touch_from] == group) & (labels.ids[touch_to] == other)].sum())
        key = (violation, min(group_households, together - group_households), -shared, int(other))
        if best is None or key < best[0]:
            best = (key, int(other), other_members)
    assert best is not None  # the caller merges only a group that has neighbours
    _, other, other_members = best
    group_stays = _staying(group, members, today, stay_households)
    keep_id = group if group_stays >= _staying(other, other_members, today, stay_households) else other
    labels.ids[members] = keep_id
    labels.ids[other_members] = keep_id


def _worst_group(graph: AtomGraph, labels: _Labels, stuck: set):
    """The group furthest out of band (lowest id on ties) that is not stuck, and its households; or None."""
    ids, inverse = np.unique(labels.ids, return_inverse=True)
    households = np.bincount(inverse, weights=graph.households)
    violation = band_violation(households, graph.band_min, graph.band_max)
    order = [j for j in np.lexsort((ids, -violation)) if violation[j] > 0 and ids[j] not in stuck]
    return (int(ids[order[0]]), int(households[order[0]])) if order else None


def solve_minimal(graph: AtomGraph, today: np.ndarray, stay_households: np.ndarray, next_id: int) -> tuple[np.ndarray, bool]:
    """Repair today's labels ``today`` (group ids, -1 none) of one component (see the module docstring).

    Returns labels where groups that keep an old id keep their code (new groups get ids from
    ``next_id`` upwards), and whether the component's total can be in band at all.
    """
    n = len(graph.households)
    labels = _Labels(today, next_id)
    _start_from_today(graph, labels)
    today = today.astype(np.int64)
    _, feasible = grid_count(int(graph.households.sum()), graph.band_min, graph.band_max)
    stuck: set[int] = set()
    contig_from, contig_to = graph.contig_both_ways()
    for _ in range(4 * n + 10):
        worst = _worst_group(graph, labels, stuck)
        if worst is None:
            break
        group, group_households = worst
        members = np.flatnonzero(labels.ids == group)
        k, ok = grid_count(group_households, graph.band_min, graph.band_max)
        neighbours = labels.ids[contig_to[labels.ids[contig_from] == group]]
        neighbours = np.unique(neighbours[neighbours != group])
        # Over-size with a feasible split, or nothing left to merge with: split (least violation).
        if (ok and group_households > graph.band_max) or (not len(neighbours) and k > 1):
            _split_group(graph, labels, group, members, k, today, stay_households, stuck)
        elif not len(neighbours):
            stuck.add(group)
        else:  # under-size, or a size no split can bring in band: merge with a neighbour
            _merge_group(graph, labels, group, members, neighbours, today, stay_households)
    return improve(graph, labels.ids, stay_label=today, stay_households=stay_households), feasible


def release_for_feasibility(region, old_geoms, old_households, keep_mask, unit_xy, unit_households, unit_old,
                            band_min: int, band_max: int) -> list[int]:
    """Kept grids to give up so that every piece left to redraw has a feasible household total.

    Pieces are the parts of ``region`` (metres) outside the kept grids; a piece with households but
    no feasible count of in-band grids releases the kept grid sharing most boundary with it (fewest
    households on ties), and the pieces are recomputed, until all fit or nothing borders them.
    """
    keep = keep_mask.copy()
    released: list[int] = []
    hopeful = _parts_that_can_be_in_band(region, unit_xy, unit_households, band_min, band_max)
    for _ in range(int(keep.sum())):
        kept = np.flatnonzero(keep)
        if not len(kept):
            break
        choice = _grid_to_release(region, old_geoms, old_households, kept, unit_xy, unit_households, unit_old,
                                  hopeful, band_min, band_max)
        if choice is None:
            break
        keep[choice] = False
        released.append(choice)
    return released


def _parts_that_can_be_in_band(region, unit_xy, unit_households, band_min, band_max):
    """Parts of the community and whether each one's own total can be in band: releasing grids in a
    detached part of 582 urban households only moves people."""
    parts = np.asarray([p for p in shapely.get_parts(region) if shapely.area(p) > 0], dtype=object)
    at = locate_points(unit_xy, parts, nearest=False)
    part_households = np.bincount(at[at >= 0], weights=unit_households[at >= 0], minlength=len(parts))
    can = np.array([grid_count(int(x), band_min, band_max)[1] for x in part_households] + [False])
    return parts, can


def _grid_to_release(region, old_geoms, old_households, kept, unit_xy, unit_households, unit_old, hopeful,
                     band_min, band_max):
    parts, can = hopeful
    left = polygonal(shapely.difference(region, shapely.union_all(old_geoms[kept], grid_size=PRECISION_M), grid_size=PRECISION_M))
    pieces = np.asarray([p for p in shapely.get_parts(left) if shapely.area(p) > 0], dtype=object)
    if not len(pieces):
        return None
    free = ~np.isin(unit_old, kept)
    where = locate_points(unit_xy[free], pieces, nearest=False)
    piece_households = np.bincount(where[where >= 0], weights=unit_households[free][where >= 0], minlength=len(pieces))
    for i in np.argsort(-piece_households, kind="stable"):
        if piece_households[i] <= 0 or grid_count(int(piece_households[i]), band_min, band_max)[1]:
            continue
        inner_point = shapely.get_coordinates(shapely.point_on_surface(pieces[i:i + 1]))
        if not can[locate_points(inner_point, parts, nearest=False)[0]]:
            continue
        shared = shapely.length(shapely.intersection(shapely.boundary(pieces[i]), shapely.boundary(old_geoms[kept])))
        if shared.max(initial=0.0) >= 0.01:
            return int(kept[np.lexsort((old_households[kept], -shared))[0]])
    return None
