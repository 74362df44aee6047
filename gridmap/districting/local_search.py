"""Local search on atom labels (step 5 of the algorithm).

Boundary atoms move to a neighbouring grid when that never increases the band violation, keeps the
source grid contiguous (checked by a search inside the grid), and raises the sum of Polsby-Popper
scores (``4πA/P²``, computed exactly from areas in m² and shared edge lengths in metres). With
today's groups given (minimal change), fewer moved households ranks before compactness.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np

from gridmap.districting.graph import AtomGraph

#: Local-search passes over the atoms.
LOCAL_SEARCH_PASSES = 4


def _polsby_popper(area_m2: float, perimeter_m: float) -> float:
    return 4.0 * np.pi * area_m2 / (perimeter_m * perimeter_m) if perimeter_m > 0 else 0.0


@dataclass
class _Groups:
    """Running totals per group (plain lists: the search touches one atom at a time)."""

    households: list
    area: list
    perimeter: list
    atoms: list


def _group_totals(graph: AtomGraph, labels: np.ndarray) -> _Groups:
    n_groups = int(labels.max()) + 1
    inside = labels[graph.touch_a] == labels[graph.touch_b]
    internal = np.bincount(labels[graph.touch_a][inside], weights=graph.touch_len[inside], minlength=n_groups)
    return _Groups(
        households=np.bincount(labels, weights=graph.households, minlength=n_groups).tolist(),
        area=np.bincount(labels, weights=graph.area, minlength=n_groups).tolist(),
        perimeter=(np.bincount(labels, weights=graph.perimeter, minlength=n_groups) - 2 * internal).tolist(),
        atoms=np.bincount(labels, minlength=n_groups).tolist(),
    )


def _neighbour_lists(graph: AtomGraph) -> tuple[list, list]:
    """Contiguous neighbours of each atom, and touching neighbours with their shared lengths (m)."""
    n = len(graph.households)
    contiguous: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(graph.contig_a.tolist(), graph.contig_b.tolist()):
        contiguous[a].append(b)
        contiguous[b].append(a)
    touching: list[tuple[list[int], list[float]]] = [([], []) for _ in range(n)]
    for a, b, length in zip(graph.touch_a.tolist(), graph.touch_b.tolist(), graph.touch_len.tolist()):
        touching[a][0].append(b)
        touching[a][1].append(length)
        touching[b][0].append(a)
        touching[b][1].append(length)
    return contiguous, touching


def _stays_connected(label: list, contiguous: list, atom: int, group: int) -> bool:
    """Whether ``group`` stays one piece without ``atom`` (a search inside the group)."""
    targets = [j for j in contiguous[atom] if label[j] == group]
    if len(targets) <= 1:
        return True
    need = set(targets[1:])
    seen = {atom, targets[0]}
    queue = deque([targets[0]])
    while queue:
        u = queue.popleft()
        for v in contiguous[u]:
            if v not in seen and label[v] == group:
                if v in need:
                    need.discard(v)
                    if not need:
                        return True
                seen.add(v)
                queue.append(v)
    return not need


class _Search:
    """State of one local search: labels, group totals, neighbours, band and today's groups."""

    def __init__(self, graph: AtomGraph, labels: np.ndarray, stay_label, stay_households):
        self.label = labels.astype(np.int64).tolist()
        self.band = (graph.band_min, graph.band_max)
        self.households = graph.households.tolist()
        self.area = graph.area.tolist()
        self.perimeter = graph.perimeter.tolist()
        self.contiguous, self.touching = _neighbour_lists(graph)
        self.groups = _group_totals(graph, np.asarray(self.label))
        self.stay_label = stay_label.tolist() if stay_label is not None else None
        self.stay_households = stay_households.tolist() if stay_households is not None else None

    def violation(self, households: float) -> float:
        band_min, band_max = self.band
        return band_min - households if households < band_min else (households - band_max if households > band_max else 0)

    def moved_if_in(self, atom: int, group: int) -> float:
        """Households of ``atom`` that would not be in their today's group if it were in ``group``."""
        if self.stay_label is None or self.stay_households is None:  # both or neither are given
            return 0
        return self.households[atom] - (self.stay_households[atom] if self.stay_label[atom] == group else 0)

    def shared_by_group(self, atom: int) -> dict:
        shared: defaultdict[int, float] = defaultdict(float)
        for j, length in zip(*self.touching[atom]):
            shared[self.label[j]] += length
        return shared

    def best_move(self, atom: int):
        """The neighbouring group ``atom`` should move to, with the source's new area and perimeter; or None."""
        source = self.label[atom]
        candidates = {self.label[j] for j in self.contiguous[atom]} - {source}
        g = self.groups
        if not candidates or g.atoms[source] <= 1:
            return None
        shared = self.shared_by_group(atom)
        hh, area, perim = self.households[atom], self.area[atom], self.perimeter[atom]
        source_violation = self.violation(g.households[source])
        source_violation_after = self.violation(g.households[source] - hh)
        source_area, source_perim = g.area[source] - area, g.perimeter[source] - perim + 2 * shared[source]
        source_pp_before = _polsby_popper(g.area[source], g.perimeter[source])
        source_pp_after = _polsby_popper(source_area, source_perim)
        moved_here = self.moved_if_in(atom, source)
        options = []
        for target in candidates:
            d_violation = (source_violation_after + self.violation(g.households[target] + hh)
                           - source_violation - self.violation(g.households[target]))
            if d_violation > 0:
                continue
            d_moved = self.moved_if_in(atom, target) - moved_here
            gain = (source_pp_after + _polsby_popper(g.area[target] + area, g.perimeter[target] + perim - 2 * shared[target])
                    - source_pp_before - _polsby_popper(g.area[target], g.perimeter[target]))
            if d_violation < 0 or d_moved < 0 or (d_moved == 0 and gain > 1e-9):
                options.append((d_violation, d_moved, -gain, target))
        if not options:
            return None
        options.sort()
        return options[0][3], source_area, source_perim, shared[options[0][3]]

    def move(self, atom: int, target: int, source_area: float, source_perim: float, shared_with_target: float) -> None:
        source, g = self.label[atom], self.groups
        self.label[atom] = target
        g.households[source] -= self.households[atom]
        g.households[target] += self.households[atom]
        g.area[source] = source_area
        g.area[target] += self.area[atom]
        g.perimeter[source] = source_perim
        g.perimeter[target] = g.perimeter[target] + self.perimeter[atom] - 2 * shared_with_target
        g.atoms[source] -= 1
        g.atoms[target] += 1


def improve(graph: AtomGraph, labels: np.ndarray, passes: int = LOCAL_SEARCH_PASSES, stay_label=None,
            stay_households=None) -> np.ndarray:
    """Local search on atom labels (see the module docstring); returns the new labels.

    ``stay_label[i]`` / ``stay_households[i]``: the group in which ``stay_households[i]`` of atom
    ``i``'s households are today; given, fewer moved households ranks before compactness.
    """
    n = len(labels)
    if n <= 1:
        return labels
    search = _Search(graph, labels, stay_label, stay_households)
    for _ in range(passes):
        changed = 0
        for atom in range(n):
            move = search.best_move(atom)
            if move is None or not _stays_connected(search.label, search.contiguous, atom, search.label[atom]):
                continue
            search.move(atom, *move)
            changed += 1
        if not changed:
            break
    return np.asarray(search.label, dtype=np.int64)
