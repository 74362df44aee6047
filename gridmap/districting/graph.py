"""The atom graph of one connected component: contiguity, shared boundary lengths, components.

Atoms are indexed locally ``0..n-1``; lengths in metres, areas in m² (the community's UTM zone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pandas as pd


@dataclass
class AtomGraph:
    """Arrays of one component of atoms (metres, m², households).

    Attributes
    ----------
    households : ndarray of float
        Households per atom.
    xy : ndarray (n, 2)
        A point inside each atom (metres).
    area, perimeter : ndarray of float
        Atom areas (m²) and perimeters (m).
    contig_a, contig_b : ndarray of int64
        Contiguity pairs ``a < b`` (may hold virtual pairs joining islands across a barrier).
    touch_a, touch_b, touch_len : ndarray
        Touching pairs ``a < b`` and their shared boundary length (m).
    band_min, band_max : int
        Household band of a grid.
    rng : numpy.random.Generator
        The community's seeded generator.
    failures : list of int
        Household totals of sets no in-band contiguous cut was found for (for the report).
    """

    households: np.ndarray
    xy: np.ndarray
    area: np.ndarray
    perimeter: np.ndarray
    contig_a: np.ndarray
    contig_b: np.ndarray
    touch_a: np.ndarray
    touch_b: np.ndarray
    touch_len: np.ndarray
    band_min: int
    band_max: int
    rng: np.random.Generator
    failures: list = field(default_factory=list)

    def __post_init__(self):
        # Sets are cut from these edge lists with a membership mask, far cheaper than slicing
        # sparse matrices for the many small sets a bisection looks at.
        self._position = np.full(len(self.households), -1, dtype=np.int64)

    def contig_both_ways(self) -> tuple[np.ndarray, np.ndarray]:
        """Contiguity pairs in both directions ``(from, to)``."""
        return np.r_[self.contig_a, self.contig_b], np.r_[self.contig_b, self.contig_a]

    def touch_both_ways(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Touching pairs in both directions ``(from, to, shared length in m)``."""
        return (np.r_[self.touch_a, self.touch_b], np.r_[self.touch_b, self.touch_a],
                np.r_[self.touch_len, self.touch_len])

    def contig_within(self, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Contiguity pairs inside ``members``, renumbered to positions in ``members``."""
        a, b, _ = self._within(members, self.contig_a, self.contig_b)
        return a, b

    def touch_within(self, members: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Touching pairs inside ``members`` (positions in ``members``) and their shared length (m)."""
        a, b, keep = self._within(members, self.touch_a, self.touch_b)
        return a, b, self.touch_len[keep]

    def _within(self, members, pair_a, pair_b):
        position = self._position
        position[members] = np.arange(len(members))
        pos_a, pos_b = position[pair_a], position[pair_b]
        keep = (pos_a >= 0) & (pos_b >= 0)
        position[members] = -1
        return pos_a[keep], pos_b[keep], keep

    def components(self, members: np.ndarray) -> tuple[int, np.ndarray]:
        """Connected components of ``members``: their number and a label per member."""
        a, b = self.contig_within(members)
        return component_labels(len(members), a, b)


def component_labels(n: int, pair_a: np.ndarray, pair_b: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components by min-label hooking and pointer jumping (Shiloach-Vishkin style).

    Pure NumPy: for the small sets a bisection checks this is much cheaper than building a
    scipy sparse matrix; rounds grow with log(diameter), not the number of atoms.
    """
    label = np.arange(n)
    if n == 0 or len(pair_a) == 0:
        return n, label
    while True:
        label_a, label_b = label[pair_a], label[pair_b]
        smaller = np.minimum(label_a, label_b)
        hooked = label.copy()
        np.minimum.at(hooked, label_a, smaller)
        np.minimum.at(hooked, label_b, smaller)
        while True:
            jumped = hooked[hooked]
            if np.array_equal(jumped, hooked):
                break
            hooked = jumped
        if np.array_equal(hooked, label):
            break
        label = hooked
    roots, label = np.unique(label, return_inverse=True)
    return len(roots), label.ravel()


def side_connected(n: int, pair_a: np.ndarray, pair_b: np.ndarray, on_side: np.ndarray) -> bool:
    """Whether the positions ``on_side`` of a set with local pairs ``pair_a, pair_b`` form one component."""
    both_on_side = on_side[pair_a] & on_side[pair_b]
    nodes = np.flatnonzero(on_side)
    if len(nodes) <= 1:
        return True
    a, b = pair_a[both_on_side], pair_b[both_on_side]
    if len(a) < len(nodes) - 1:
        return False
    if len(a) > 20000:
        _, label = component_labels(n, a, b)
        return bool(np.all(label[nodes] == label[nodes[0]]))
    return _union_find_connected(n, a.tolist(), b.tolist(), len(nodes))


def _union_find_connected(n: int, a: list, b: list, groups: int) -> bool:
    """Whether joining pairs ``a, b`` brings ``groups`` nodes to one group (small sets: a plain
    union-find beats any array machinery)."""
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a, b):
        root_x, root_y = find(x), find(y)
        if root_x != root_y:
            parent[root_x] = root_y
            groups -= 1
            if groups == 1:
                return True
    return groups == 1


def sub_edges(members: np.ndarray, n: int, pair_a: np.ndarray, pair_b: np.ndarray, values: np.ndarray):
    """Pairs with both ends in ``members``, renumbered to positions in ``members``, with their values."""
    position = np.full(n, -1, dtype=np.int64)
    position[members] = np.arange(len(members))
    pos_a, pos_b = position[pair_a], position[pair_b]
    keep = (pos_a >= 0) & (pos_b >= 0)
    return pos_a[keep], pos_b[keep], values[keep]


def fill_labels(labels: np.ndarray, pair_from: np.ndarray, pair_to: np.ndarray, shared_len: np.ndarray) -> None:
    """Unlabelled atoms (-1) take, in rounds, the label they share most boundary with (in place).

    ``pair_from, pair_to, shared_len``: touching pairs in both directions and their shared length (m).
    """
    for _ in range(len(labels)):
        unlabelled = labels[pair_from] < 0
        ok = unlabelled & (labels[pair_to] >= 0)
        if not ok.any():
            return
        df = pd.DataFrame({"i": pair_from[ok], "l": labels[pair_to[ok]], "len": shared_len[ok]})
        # pandas-stubs types a column sum as a Series, but with as_index=False it is a DataFrame
        best = cast(pd.DataFrame, df.groupby(["i", "l"], as_index=False)["len"].sum())
        best = best.sort_values(["i", "len", "l"], ascending=[True, False, True]).drop_duplicates("i")
        labels[best["i"].to_numpy()] = best["l"].to_numpy()
