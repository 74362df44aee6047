"""Recursive bisection of a contiguous atom set into ``k`` grids (step 4 of the algorithm).

A set is bisected into ``⌊k/2⌋`` and ``⌈k/2⌉`` grids: the atoms are ordered along 16 directions,
and for each direction every prefix whose household total keeps both halves feasible is scored by
the length of the cut (shared edges crossing it, metres, from a prefix sum over edge ranks). The
best-scored cut whose halves are both contiguous wins; failing that, detached fragments are moved to
the other side; failing that, spanning-tree cuts (ReCom-style) guarantee contiguity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from gridmap.districting.bands import grid_count
from gridmap.districting.graph import AtomGraph, side_connected
from gridmap.districting.local_search import improve

#: Directions tried by a bisection (evenly spread over 180°).
N_DIRECTIONS = 16
#: Random spanning trees tried when no straight cut gives contiguous halves.
N_TREES = 24
#: Straight cuts (best directions) tried before the fallbacks.
N_STRAIGHT_TRIED = 8


@dataclass
class _Window:
    """Households the first half may hold: ``[low, high]``, aiming at ``target``; ``feasible`` when
    some in-band split exists."""

    low: float
    high: float
    target: float
    feasible: bool


def _first_half_window(total: float, k: int, band_min: int, band_max: int) -> _Window:
    k_first = k // 2
    k_second = k - k_first
    target = total * k_first / k
    low = max(k_first * band_min, total - k_second * band_max)
    high = min(k_first * band_max, total - k_second * band_min)
    if low <= high:
        return _Window(low, high, target, True)
    return _Window(target, target, target, False)


def _distance_outside(weight, window: _Window):
    """Households by which a first-half total misses the window (0 inside)."""
    return np.where((weight >= window.low) & (weight <= window.high), 0.0,
                    np.minimum(np.abs(weight - window.low), np.abs(weight - window.high)))


def fix_fragments(graph: AtomGraph, members: np.ndarray, in_first: np.ndarray) -> np.ndarray:
    """Move detached pieces of each side to the other side until both sides are contiguous."""
    in_first = in_first.copy()
    for _ in range(8):
        changed = False
        for side in (True, False):
            on_side = np.flatnonzero(in_first == side)
            if len(on_side) <= 1:
                continue
            n_pieces, piece = graph.components(members[on_side])
            if n_pieces > 1:
                piece_households = np.bincount(piece, weights=graph.households[members[on_side]], minlength=n_pieces)
                piece_atoms = np.bincount(piece, minlength=n_pieces)
                main = int(np.lexsort((-piece_atoms, -piece_households))[0])
                in_first[on_side[piece != main]] = not side
                changed = True
        if not changed:
            break
    return in_first


def _tree_side(tree, n: int, vertex: int, parent: int) -> np.ndarray:
    """Atoms on ``vertex``'s side once the tree edge ``vertex–parent`` is cut."""
    edges = tree.tocoo()
    keep = ~(((edges.row == vertex) & (edges.col == parent)) | ((edges.col == vertex) & (edges.row == parent)))
    cut_tree = sparse.coo_matrix((edges.data[keep], (edges.row[keep], edges.col[keep])), shape=(n, n))
    _, label = csgraph.connected_components(cut_tree, directed=False)
    return label == label[vertex]


def tree_cuts(graph: AtomGraph, members: np.ndarray, window: _Window):
    """Contiguous bisections from random-weighted spanning trees (ReCom-style); best by balance.

    Returns ``((miss, score), in_first)`` or None when the set has no edges.
    """
    n = len(members)
    pair_a, pair_b = graph.contig_within(members)
    if len(pair_a) == 0:
        return None
    distance_m = np.hypot(*(graph.xy[members][pair_a] - graph.xy[members][pair_b]).T) + 1e-3
    households = graph.households[members].astype(float)
    total = households.sum()
    best = None
    for _ in range(N_TREES):
        cost = distance_m * (1.0 + graph.rng.random(len(distance_m)))
        tree = csgraph.minimum_spanning_tree(sparse.coo_matrix((cost, (pair_a, pair_b)), shape=(n, n)).tocsr())
        order, parent = csgraph.breadth_first_order(tree, 0, directed=False)
        if len(order) < n:
            return None
        subtree = households.copy()
        for vertex in order[:0:-1]:
            subtree[parent[vertex]] += subtree[vertex]
        below = order[1:]
        for flip in (False, True):
            first_half = total - subtree[below] if flip else subtree[below]
            miss = _distance_outside(first_half, window)
            score = miss * total + np.abs(first_half - window.target)
            j = int(np.argmin(score))
            candidate = (float(miss[j]), float(score[j]))
            if best is None or candidate < best[0]:
                on_vertex_side = _tree_side(tree, n, below[j], parent[below[j]])
                best = (candidate, ~on_vertex_side if flip else on_vertex_side)
        if best is not None and best[0][0] == 0:
            break
    return best


def _straight_cuts(graph: AtomGraph, members: np.ndarray, window: _Window):
    """Best prefix cut along each of ``N_DIRECTIONS`` directions, best first.

    Returns a list of ``(miss, in_first)``: households outside the window and the first half.
    """
    n = len(members)
    households = graph.households[members].astype(float)
    total = households.sum()
    touch_a, touch_b, shared_len = graph.touch_within(members)
    xy = graph.xy[members] - graph.xy[members].mean(axis=0)
    angle = graph.rng.random() * np.pi / N_DIRECTIONS + np.arange(N_DIRECTIONS) * np.pi / N_DIRECTIONS
    order = np.argsort(xy @ np.vstack([np.cos(angle), np.sin(angle)]), axis=0, kind="stable")  # (n, D)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n)[:, None], axis=0)
    prefix = np.cumsum(households[order], axis=0)[:-1]  # (n-1, D): households of the first p+1 atoms
    cut_m = _cut_lengths(rank, touch_a, touch_b, shared_len)
    miss = _distance_outside(prefix, window)
    score = miss * 1e9 + cut_m * (1.0 + np.abs(prefix - window.target) / max(total, 1.0))
    best_prefix = np.argmin(score, axis=0)
    directions = np.arange(N_DIRECTIONS)
    ranked = np.lexsort((score[best_prefix, directions], miss[best_prefix, directions]))
    return [(float(miss[best_prefix[d], d]), rank[:, d] <= best_prefix[d]) for d in ranked[:N_STRAIGHT_TRIED]]


def _cut_lengths(rank: np.ndarray, touch_a, touch_b, shared_len) -> np.ndarray:
    """Boundary length (m) cut at each prefix position of each direction: an edge counts for the
    positions between its two ranks."""
    n, n_dir = rank.shape
    low = np.minimum(rank[touch_a], rank[touch_b])
    high = np.maximum(rank[touch_a], rank[touch_b])
    column = np.broadcast_to(np.arange(n_dir), low.shape)
    size = (n + 1) * n_dir
    weights = np.repeat(shared_len, n_dir)
    diff = (np.bincount((low * n_dir + column).ravel(), weights=weights, minlength=size)
            - np.bincount((high * n_dir + column).ravel(), weights=weights, minlength=size))
    return np.cumsum(diff.reshape(n + 1, n_dir), axis=0)[: n - 1]


def bisect(graph: AtomGraph, members: np.ndarray, k: int):
    """Split the contiguous atom set ``members`` into two sets for ``⌊k/2⌋`` and ``⌈k/2⌉`` grids.

    Returns ``(first, second)`` atom index arrays, or None when no split exists.
    """
    n = len(members)
    total = graph.households[members].astype(float).sum()
    window = _first_half_window(total, k, graph.band_min, graph.band_max)
    contig_a, contig_b = graph.contig_within(members)

    def both_connected(in_first):
        return side_connected(n, contig_a, contig_b, in_first) and side_connected(n, contig_a, contig_b, ~in_first)

    tried = _straight_cuts(graph, members, window)
    best_out_of_window = None
    for miss, in_first in tried:
        if both_connected(in_first):
            if miss == 0:
                return members[in_first], members[~in_first]
            if best_out_of_window is None:
                best_out_of_window = in_first
    for _, in_first in tried:
        in_first = fix_fragments(graph, members, in_first)
        if not in_first.any() or in_first.all():
            continue
        first_total = graph.households[members][in_first].sum()
        if window.low <= first_total <= window.high and both_connected(in_first):
            return members[in_first], members[~in_first]
    return _fallback_split(graph, members, window, best_out_of_window, total)


def _fallback_split(graph: AtomGraph, members, window: _Window, best_out_of_window, total: float):
    """Spanning-tree cuts; failing an in-window one, the most balanced contiguous cut (noted)."""
    tree = tree_cuts(graph, members, window)
    tree_ok = tree is not None and tree[1].any() and not tree[1].all()
    if tree_ok and tree[0][0] == 0:
        return members[tree[1]], members[~tree[1]]
    if window.feasible:
        graph.failures.append(int(total))
    if tree_ok:
        return members[tree[1]], members[~tree[1]]
    if best_out_of_window is not None:
        return members[best_out_of_window], members[~best_out_of_window]
    return None


def partition(graph: AtomGraph, members: np.ndarray, k: int) -> list[np.ndarray]:
    """Cut the contiguous atom set ``members`` into (up to) ``k`` contiguous groups by recursive bisection."""
    groups = []
    stack = [(members, k)]
    while stack:
        atoms, grids = stack.pop()
        if grids <= 1 or len(atoms) <= 1:
            groups.append(atoms)
            continue
        split = bisect(graph, atoms, grids)
        if split is None:
            groups.append(atoms)
            continue
        first, second = split
        stack.append((second, grids - grids // 2))
        stack.append((first, grids // 2))
    return groups


def solve_fresh(graph: AtomGraph) -> tuple[np.ndarray, bool]:
    """Labels ``0..k-1`` for a fresh partition of one component; and whether the band was feasible."""
    n = len(graph.households)
    k, feasible = grid_count(int(graph.households.sum()), graph.band_min, graph.band_max)
    labels = np.empty(n, dtype=np.int64)
    for group_id, atoms in enumerate(partition(graph, np.arange(n), k)):
        labels[atoms] = group_id
    return improve(graph, labels), feasible
