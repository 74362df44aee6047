"""Redraw grids (网格划分): 300–500 households per urban grid, 100–200 per rural one.

Each community (社区) is cut into grids independently — a grid never crosses a community boundary —
so that every grid holds a household count inside the band ``[min, max]``, is one contiguous
polygon, is as compact as possible (Polsby-Popper, ``4πA/P²``), and the grids of a community tile it
exactly. With today's grids given, the redraw is *minimal*: every grid already in band is kept
untouched (same households, same code) and only the rest of the community is redrawn, moving as few
households as possible.

Algorithm
---------
1. **Atoms** (``gridmap.atoms``). The region to draw (the community, or the part of it not covered by
   kept grids) is tiled by atoms: H3 cells at a resolution chosen from the density (10 or 11), or the
   Voronoi territories of buildings when buildings are given. Atoms carry household counts; two atoms
   are contiguous when they share an edge that no barrier (river, arterial road) crosses. Shared edge
   lengths make the perimeter of any union of atoms an exact sum, so compactness is cheap to update.
2. **Components.** Atoms split into connected components. A component whose household total no set
   of in-band grids fits (see 3) is joined to its neighbour across the barrier that isolates it
   (barriers are soft when they would leave an infeasible island); in a fresh redraw, such a detached
   part of a multi-part community is joined to the nearest part (one grid is then multi-part, and
   reported). Between kept grids (minimal change) no such jump is made.
3. **How many grids.** A component of ``W`` households can be cut into ``k`` in-band grids only if
   ``k·min ≤ W ≤ k·max``; among feasible ``k`` the one with mean size closest to the middle of the
   band is taken (slack on both sides). When no ``k`` is feasible (e.g. 250 households in an urban
   community, or 501–599) the ``k`` with the smallest total band violation is taken and an issue is
   reported: no partition can be in band.
4. **Recursive bisection.** A set to be cut into ``k`` grids is bisected into ``⌊k/2⌋`` and
   ``⌈k/2⌉`` grids: the atoms are ordered along 16 directions, and for each direction every prefix
   whose weight keeps both halves feasible is scored by the length of the cut (shared edges crossing
   it, from a prefix sum over edge ranks) — shortest cuts give compact halves. The best-scored cut
   whose halves are both contiguous wins; failing that, detached fragments are moved to the other side;
   failing that, spanning-tree cuts (ReCom-style: a random-weighted minimum spanning tree, cut at an
   edge whose subtree has a feasible weight) guarantee contiguity.
5. **Local search.** Boundary atoms move to a neighbouring grid when that never increases the band
   violation, keeps the source grid contiguous (checked by a search inside the grid), and raises the
   sum of Polsby-Popper scores (computed exactly from areas and shared edge lengths).
6. **Minimal change.** Kept grids are clipped to the community (in code order, so overlaps go to the
   smaller code) and left alone. In the rest, atoms start in the grid they are in today; groups are
   made contiguous, then repaired one at a time — an under-size group merges with the neighbour that
   makes the pair feasible (the group with more staying households keeps its code), an over-size one
   is bisected as in 4 with the part holding most of its households keeping the code — and the local
   search then takes, in this order: less band violation, fewer moved households, more compactness.
7. **Tiling and codes.** Atoms with no households (and empty leftovers between kept grids) go to the
   neighbouring grid they share most boundary with. Grid polygons are unions of their atoms. Kept grids
   keep their codes; new grids get the community code plus the lowest free two-digit sequence
   (CJ/T 349 style: ``<community><sep><NN>``, ``sep`` ``-`` when the community code is not numeric).

With ``release_kept``, a leftover piece whose total no in-band grids can fit (e.g. 250 households
boxed in by kept grids) also releases the kept grid sharing most boundary with it, one at a time.

``preview_edit`` is the planners' what-if: move H3 cells or areas (building footprints) into a grid
and get the new counts, contiguity and compactness of every grid touched, without saving.

Everything runs in the local UTM zone (metres); input and output are WGS84 (EPSG:4326). The result
depends only on the inputs and ``seed`` (NumPy ``default_rng`` seeded per community).
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict, deque
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from gridmap.atoms import PRECISION_M, Atoms, building_atoms, choose_h3_res, h3_atoms, locate_points
from gridmap.compactness import polsby_popper
from gridmap.contract import WGS84, grid_band
from gridmap.metric import metric_crs

#: Directions tried by a bisection (evenly spread over 180°).
N_DIRECTIONS = 16
#: Random spanning trees tried when no straight cut gives contiguous halves.
N_TREES = 24
#: Local-search passes over the atoms.
LOCAL_SEARCH_PASSES = 4

STATUS_KEPT = "kept"
STATUS_REDRAWN = "redrawn"
STATUS_NEW = "new"


# ---------------------------------------------------------------------------------------------
# Counting grids


def band_violation(w, lo: int, hi: int):
    """Households outside ``[lo, hi]`` (0 when in band); works on scalars and arrays."""
    return np.maximum(0, np.maximum(lo - np.asarray(w), np.asarray(w) - hi))


def grid_count(total: int, lo: int, hi: int) -> tuple[int, bool]:
    """Number of grids for ``total`` households and whether all of them can be in ``[lo, hi]``.

    Among feasible counts ``k`` (``k·lo ≤ total ≤ k·hi``) the one whose mean is closest to the middle
    of the band; otherwise the count with the least total violation (at least 1).
    """
    if total <= 0:
        return 1, False
    kmin, kmax = -(-total // hi), total // lo
    if kmin <= kmax:
        mid = (lo + hi) / 2.0
        ks = np.arange(kmin, kmax + 1)
        return int(ks[np.argmin(np.abs(total / ks - mid))]), True
    best = None
    for k in {max(1, kmax), max(1, kmin)}:
        v = max(0, k * lo - total, total - k * hi)
        if best is None or (v, k) < best:
            best = (v, k)
    return best[1], False


# ---------------------------------------------------------------------------------------------
# Partitioning one connected component


@dataclass
class _Graph:
    """Arrays of one component, indexed locally ``0..n-1`` (metres, m², households)."""

    w: np.ndarray
    xy: np.ndarray
    area: np.ndarray
    perim: np.ndarray
    cu: np.ndarray  # contiguity edges i < j (may hold virtual edges joining islands)
    cv: np.ndarray
    lu: np.ndarray  # touching pairs i < j and their shared boundary length ll (m)
    lv: np.ndarray
    ll: np.ndarray
    lo: int
    hi: int
    rng: np.random.Generator
    failures: list = field(default_factory=list)

    def __post_init__(self):
        # Sets are cut from these edge lists with a membership mask, far cheaper than slicing
        # sparse matrices for the many small sets a bisection looks at.
        self._pos = np.full(len(self.w), -1, dtype=np.int64)

    def both(self, shared: bool = False):
        """Edges in both directions: ``(u, v, length)``."""
        if shared:
            return np.r_[self.lu, self.lv], np.r_[self.lv, self.lu], np.r_[self.ll, self.ll]
        return np.r_[self.cu, self.cv], np.r_[self.cv, self.cu], None

    def local(self, S: np.ndarray, shared: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Edges inside ``S`` renumbered to positions in ``S`` (contiguity, or shared lengths)."""
        pos = self._pos
        pos[S] = np.arange(len(S))
        u, v = (self.lu, self.lv) if shared else (self.cu, self.cv)
        pu, pv = pos[u], pos[v]
        k = (pu >= 0) & (pv >= 0)
        pos[S] = -1
        return pu[k], pv[k], (self.ll[k] if shared else None)

    @staticmethod
    def _labels(m: int, eu: np.ndarray, ev: np.ndarray) -> tuple[int, np.ndarray]:
        """Connected components by min-label hooking and pointer jumping (Shiloach-Vishkin style).

        Pure NumPy: for the small sets a bisection checks this is much cheaper than building a
        scipy sparse matrix; rounds grow with log(diameter), not the number of atoms.
        """
        lab = np.arange(m)
        if m == 0 or len(eu) == 0:
            return m, lab
        while True:
            lu, lv = lab[eu], lab[ev]
            mn = np.minimum(lu, lv)
            new = lab.copy()
            np.minimum.at(new, lu, mn)
            np.minimum.at(new, lv, mn)
            while True:
                nxt = new[new]
                if np.array_equal(nxt, new):
                    break
                new = nxt
            if np.array_equal(new, lab):
                break
            lab = new
        roots, lab = np.unique(lab, return_inverse=True)
        return len(roots), lab.ravel()

    def components(self, idx: np.ndarray) -> tuple[int, np.ndarray]:
        eu, ev, _ = self.local(idx)
        return self._labels(len(idx), eu, ev)


def _side_connected(m: int, eu: np.ndarray, ev: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the positions ``mask`` of a set with local edges ``eu, ev`` form one component."""
    k = mask[eu] & mask[ev]
    nodes = np.flatnonzero(mask)
    if len(nodes) <= 1:
        return True
    a, b = eu[k], ev[k]
    if len(a) < len(nodes) - 1:
        return False
    if len(a) > 20000:
        _, lab = _Graph._labels(m, a, b)
        return bool(np.all(lab[nodes] == lab[nodes[0]]))
    # Small sets (the usual case): a plain union-find beats any array machinery.
    parent = list(range(m))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    groups = len(nodes)
    for x, y in zip(a.tolist(), b.tolist()):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[rx] = ry
            groups -= 1
            if groups == 1:
                return True
    return groups == 1


def _fix_fragments(g: _Graph, S: np.ndarray, in_a: np.ndarray) -> np.ndarray:
    """Move detached pieces of each side to the other side until both sides are contiguous."""
    in_a = in_a.copy()
    for _ in range(8):
        changed = False
        for side in (True, False):
            idx = np.flatnonzero(in_a == side)
            if len(idx) <= 1:
                continue
            n, lab = g.components(S[idx])
            if n > 1:
                wc = np.bincount(lab, weights=g.w[S[idx]], minlength=n)
                sz = np.bincount(lab, minlength=n)
                main = int(np.lexsort((-sz, -wc))[0])
                in_a[idx[lab != main]] = not side
                changed = True
        if not changed:
            break
    return in_a


def _tree_cuts(g: _Graph, S: np.ndarray, lo1: float, hi1: float, target: float):
    """Contiguous bisections from random-weighted spanning trees (ReCom-style); best by balance."""
    m = len(S)
    su, sv, _ = g.local(S)
    if len(su) == 0:
        return None
    d = np.hypot(*(g.xy[S][su] - g.xy[S][sv]).T) + 1e-3
    wS = g.w[S].astype(float)
    W = wS.sum()
    best = None
    for _ in range(N_TREES):
        cost = d * (1.0 + g.rng.random(len(d)))
        tree = csgraph.minimum_spanning_tree(sparse.coo_matrix((cost, (su, sv)), shape=(m, m)).tocsr())
        order, pred = csgraph.breadth_first_order(tree, 0, directed=False)
        if len(order) < m:
            return None
        s = wS.copy()
        for v in order[:0:-1]:
            s[pred[v]] += s[v]
        v_all = order[1:]
        for flip in (False, True):
            wa = W - s[v_all] if flip else s[v_all]
            dev = np.where((wa >= lo1) & (wa <= hi1), 0.0, np.minimum(np.abs(wa - lo1), np.abs(wa - hi1)))
            key = dev * W + np.abs(wa - target)
            j = int(np.argmin(key))
            cand = (float(dev[j]), float(key[j]))
            if best is None or cand < best[0]:
                v = v_all[j]
                t = tree.tocoo()
                keep = ~(((t.row == v) & (t.col == pred[v])) | ((t.col == v) & (t.row == pred[v])))
                cut_tree = sparse.coo_matrix((t.data[keep], (t.row[keep], t.col[keep])), shape=(m, m))
                _, lab = csgraph.connected_components(cut_tree, directed=False)
                in_sub = lab == lab[v]
                best = (cand, ~in_sub if flip else in_sub)
        if best is not None and best[0][0] == 0:
            break
    return best


def _bisect(g: _Graph, S: np.ndarray, k: int):
    """Split the atom set ``S`` (contiguous) into ``(A, k1), (B, k2)``; see the module docstring."""
    k1 = k // 2
    k2 = k - k1
    lo, hi = g.lo, g.hi
    wS = g.w[S].astype(float)
    W = wS.sum()
    m = len(S)
    target = W * k1 / k
    lo1 = max(k1 * lo, W - k2 * hi)
    hi1 = min(k1 * hi, W - k2 * lo)
    feasible = lo1 <= hi1
    if not feasible:
        lo1 = hi1 = target
    eu, ev, el = g.local(S, shared=True)
    cu, cv, _ = g.local(S)
    xy = g.xy[S] - g.xy[S].mean(axis=0)
    D = N_DIRECTIONS
    th = g.rng.random() * np.pi / D + np.arange(D) * np.pi / D
    proj = xy @ np.vstack([np.cos(th), np.sin(th)])  # (m, D)
    order = np.argsort(proj, axis=0, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(m)[:, None], axis=0)
    cw = np.cumsum(wS[order], axis=0)[:-1]  # (m-1, D): weight of the first p+1 atoms
    # Cut length at each position: an edge counts for positions between its two ranks.
    a = np.minimum(rank[eu], rank[ev])
    b = np.maximum(rank[eu], rank[ev])
    col = np.broadcast_to(np.arange(D), a.shape)
    size = (m + 1) * D
    diff = np.bincount((a * D + col).ravel(), weights=np.repeat(el, D), minlength=size) - np.bincount(
        (b * D + col).ravel(), weights=np.repeat(el, D), minlength=size)
    cut = np.cumsum(diff.reshape(m + 1, D), axis=0)[: m - 1]
    dev = np.where((cw >= lo1) & (cw <= hi1), 0.0, np.minimum(np.abs(cw - lo1), np.abs(cw - hi1)))
    score = dev * 1e9 + cut * (1.0 + np.abs(cw - target) / max(W, 1.0))
    best_p = np.argmin(score, axis=0)
    cols = np.arange(D)
    cand_dev = dev[best_p, cols]
    cand_score = score[best_p, cols]
    ranked = np.lexsort((cand_score, cand_dev))
    best_bad = None
    tried = []
    for d_ in ranked[:8]:
        p = int(best_p[d_])
        in_a = rank[:, d_] <= p
        tried.append((float(cand_dev[d_]), in_a))
        if _side_connected(m, cu, cv, in_a) and _side_connected(m, cu, cv, ~in_a):
            if cand_dev[d_] == 0:
                return S[in_a], S[~in_a]
            if best_bad is None:
                best_bad = in_a
    for _, in_a in tried:
        in_a = _fix_fragments(g, S, in_a)
        if not in_a.any() or in_a.all():
            continue
        wa = wS[in_a].sum()
        if lo1 <= wa <= hi1 and _side_connected(m, cu, cv, in_a) and _side_connected(m, cu, cv, ~in_a):
            return S[in_a], S[~in_a]
    tree = _tree_cuts(g, S, lo1, hi1, target)
    if tree is not None and tree[0][0] == 0 and tree[1].any() and not tree[1].all():
        return S[tree[1]], S[~tree[1]]
    # No cut in the feasible window: keep the most balanced contiguous one and say so.
    if feasible:
        g.failures.append(int(W))
    if tree is not None and tree[1].any() and not tree[1].all():
        return S[tree[1]], S[~tree[1]]
    if best_bad is not None:
        return S[best_bad], S[~best_bad]
    return None


def partition(g: _Graph, S: np.ndarray, k: int) -> list[np.ndarray]:
    """Cut the contiguous atom set ``S`` into (up to) ``k`` contiguous groups by recursive bisection."""
    out = []
    stack = [(S, k)]
    while stack:
        T, kk = stack.pop()
        if kk <= 1 or len(T) <= 1:
            out.append(T)
            continue
        split = _bisect(g, T, kk)
        if split is None:
            out.append(T)
            continue
        A, B = split
        stack.append((B, kk - kk // 2))
        stack.append((A, kk // 2))
    return out


def _pp(a: float, p: float) -> float:
    return 4.0 * np.pi * a / (p * p) if p > 0 else 0.0


def improve(g: _Graph, labels: np.ndarray, passes: int = LOCAL_SEARCH_PASSES, stay_label=None, stay_w=None) -> np.ndarray:
    """Local search on atom labels (see module docstring, step 5); returns the new labels.

    ``stay_label[i]`` / ``stay_w[i]``: the group in which ``stay_w[i]`` of atom ``i``'s households are
    today; given, fewer moved households ranks before compactness.
    """
    lab = labels.astype(np.int64).tolist()
    n = len(lab)
    if n <= 1:
        return labels
    lo, hi = g.lo, g.hi
    w = g.w.tolist()
    area = g.area.tolist()
    perim = g.perim.tolist()
    nb = [[] for _ in range(n)]
    for u, v in zip(g.cu.tolist(), g.cv.tolist()):
        nb[u].append(v)
        nb[v].append(u)
    lnb = [([], []) for _ in range(n)]
    for u, v, ln in zip(g.lu.tolist(), g.lv.tolist(), g.ll.tolist()):
        lnb[u][0].append(v)
        lnb[u][1].append(ln)
        lnb[v][0].append(u)
        lnb[v][1].append(ln)
    G = int(max(lab)) + 1
    la = np.asarray(lab)
    gw = np.bincount(la, weights=g.w, minlength=G).tolist()
    ga = np.bincount(la, weights=g.area, minlength=G).tolist()
    gc = np.bincount(la, minlength=G).tolist()
    same = la[g.lu] == la[g.lv]
    gp = (np.bincount(la, weights=g.perim, minlength=G) - 2 * np.bincount(la[g.lu][same], weights=g.ll[same], minlength=G)).tolist()
    sl = stay_label.tolist() if stay_label is not None else None
    sw = stay_w.tolist() if stay_w is not None else None

    def viol(x):
        return lo - x if x < lo else (x - hi if x > hi else 0)

    def stays_connected(i, a):
        targets = [j for j in nb[i] if lab[j] == a]
        if len(targets) <= 1:
            return True
        need = set(targets[1:])
        seen = {i, targets[0]}
        q = deque([targets[0]])
        while q:
            u = q.popleft()
            for v in nb[u]:
                if v not in seen and lab[v] == a:
                    if v in need:
                        need.discard(v)
                        if not need:
                            return True
                    seen.add(v)
                    q.append(v)
        return not need

    for _ in range(passes):
        changed = 0
        for i in range(n):
            a = lab[i]
            cands = {lab[j] for j in nb[i]}
            cands.discard(a)
            if not cands or gc[a] <= 1:
                continue
            sh = defaultdict(float)
            for j, l in zip(*lnb[i]):
                sh[lab[j]] += l
            wi, ai, pi = w[i], area[i], perim[i]
            va = viol(gw[a])
            va2 = viol(gw[a] - wi)
            Aa, Pa = ga[a] - ai, gp[a] - pi + 2 * sh[a]
            base_a = _pp(ga[a], gp[a])
            new_a = _pp(Aa, Pa)
            moved_a = 0 if sl is None else wi - (sw[i] if sl[i] == a else 0)
            options = []
            for b in cands:
                dv = va2 + viol(gw[b] + wi) - va - viol(gw[b])
                if dv > 0:
                    continue
                dm = 0 if sl is None else (wi - (sw[i] if sl[i] == b else 0)) - moved_a
                gain = new_a + _pp(ga[b] + ai, gp[b] + pi - 2 * sh[b]) - base_a - _pp(ga[b], gp[b])
                if dv < 0 or dm < 0 or (dm == 0 and gain > 1e-9):
                    options.append((dv, dm, -gain, b))
            if not options:
                continue
            options.sort()
            if not stays_connected(i, a):
                continue
            b = options[0][3]
            lab[i] = b
            gw[a] -= wi
            gw[b] += wi
            ga[a] = Aa
            ga[b] += ai
            gp[a] = Pa
            gp[b] = gp[b] + pi - 2 * sh[b]
            gc[a] -= 1
            gc[b] += 1
            changed += 1
        if not changed:
            break
    return np.asarray(lab, dtype=np.int64)


def solve_fresh(g: _Graph) -> tuple[np.ndarray, bool]:
    """Labels ``0..k-1`` for a fresh partition of one component; and whether the band was feasible."""
    n = len(g.w)
    k, feasible = grid_count(int(g.w.sum()), g.lo, g.hi)
    groups = partition(g, np.arange(n), k)
    labels = np.empty(n, dtype=np.int64)
    for gi, T in enumerate(groups):
        labels[T] = gi
    labels = improve(g, labels)
    return labels, feasible


def solve_minimal(g: _Graph, old: np.ndarray, stay_w: np.ndarray, next_id: int) -> tuple[np.ndarray, bool]:
    """Repair today's labels ``old`` (group ids, -1 none) of one component; see docstring step 6.

    Returns labels where groups that keep an old id keep their code; new groups get ids from
    ``next_id`` upwards.
    """
    n = len(g.w)
    lab = old.astype(np.int64).copy()
    counter = [next_id]

    def new_id():
        counter[0] += 1
        return counter[0] - 1

    # Unlabelled atoms take the label of the neighbour they share most boundary with.
    U, V, LL = g.both(shared=True)
    _fill_labels(lab, U, V, LL)
    if (lab < 0).any():
        lab[lab < 0] = new_id()
    # Each group contiguous: the heaviest piece keeps the id.
    for gid in np.unique(lab):
        idx = np.flatnonzero(lab == gid)
        ncomp, cl = g.components(idx)
        if ncomp > 1:
            wc = np.bincount(cl, weights=g.w[idx], minlength=ncomp)
            main = int(np.argmax(wc))
            for c in range(ncomp):
                if c != main:
                    lab[idx[cl == c]] = new_id()
    stay_label = old.astype(np.int64)

    def staying(gid, idx):
        return int(stay_w[idx][stay_label[idx] == gid].sum())

    _, feasible = grid_count(int(g.w.sum()), g.lo, g.hi)
    stuck: set[int] = set()
    for _ in range(4 * n + 10):
        ids, inv = np.unique(lab, return_inverse=True)
        gw = np.bincount(inv, weights=g.w)
        v = band_violation(gw, g.lo, g.hi)
        order = [j for j in np.lexsort((ids, -v)) if v[j] > 0 and ids[j] not in stuck]
        if not order:
            break
        j = order[0]
        gid = int(ids[j])
        idx = np.flatnonzero(lab == gid)
        W = int(gw[j])
        k, ok = grid_count(W, g.lo, g.hi)
        cu_, cv_, _ = g.both()
        nbr = lab[cv_[lab[cu_] == gid]]
        nbr = np.unique(nbr[nbr != gid])
        # Over-size with a feasible split, or nothing left to merge with: split (least violation).
        if (ok and W > g.hi) or (not len(nbr) and k > 1):
            parts = partition(g, idx, k)
            keep = int(np.argmax([staying(gid, p) * 1e6 + g.w[p].sum() for p in parts]))
            for pi, p in enumerate(parts):
                lab[p] = gid if pi == keep else new_id()
            if any(band_violation(g.w[p].sum(), g.lo, g.hi) > 0 for p in parts):
                stuck.update(int(x) for x in np.unique(lab[idx]))
            continue
        # Under-size, or a size no split can bring in band: merge with a neighbour.
        if not len(nbr):
            stuck.add(gid)
            continue
        best = None
        for o in nbr:
            oidx = np.flatnonzero(lab == o)
            Wt = W + int(g.w[oidx].sum())
            kt, okt = grid_count(Wt, g.lo, g.hi)
            vt = 0 if okt else max(0, kt * g.lo - Wt, Wt - kt * g.hi)
            lu_, lv_, ll_ = g.both(shared=True)
            shared = float(ll_[(lab[lu_] == gid) & (lab[lv_] == o)].sum())
            key = (vt, min(W, Wt - W), -shared, int(o))
            if best is None or key < best[0]:
                best = (key, int(o), oidx)
        _, o, oidx = best
        keep_id = gid if staying(gid, idx) >= staying(o, oidx) else o
        lab[idx] = keep_id
        lab[oidx] = keep_id
    labels = improve(g, lab, stay_label=stay_label, stay_w=stay_w)
    return labels, feasible


# ---------------------------------------------------------------------------------------------
# Community level


@dataclass
class RedrawResult:
    """Outcome of ``redraw``.

    Attributes
    ----------
    grids : GeoDataFrame (WGS84)
        One row per grid: ``grid_code``, ``community_code``, ``households``, ``kind``, ``band_min``,
        ``band_max``, ``in_band``, ``polsby_popper``, ``moved`` (households now in this grid that were
        in another grid before), ``status`` (kept / redrawn / new), geometry.
    households : pandas.Series
        New ``grid_code`` per household (index of the households input); None outside communities.
    issues : list of dict
        ``community_code``, ``kind`` (``infeasible``, ``multipart``, ``outside``, ``split_failed``,
        ``released``, ``unassigned``),
        ``message``.
    summary : dict
        ``grids``, ``in_band_pct``, ``mean_polsby_popper``, ``households``, ``moved``, ``kept``.
    """

    grids: gpd.GeoDataFrame
    households: pd.Series
    issues: list
    summary: dict
    buildings: pd.Series | None = None


def _seq_codes(community_code: str, used: set[str], n: int, sep: str | None) -> list[str]:
    """``n`` new grid codes ``<community><sep><NN>`` not in ``used`` (lowest free numbers first)."""
    if sep is None:
        sep = "" if community_code.isdigit() else "-"
    taken = set()
    pat = re.compile(re.escape(community_code + sep) + r"(\d+)$")
    for c in used:
        mt = pat.match(str(c))
        if mt:
            taken.add(int(mt.group(1)))
    out, k = [], 1
    while len(out) < n:
        code = f"{community_code}{sep}{k:02d}"
        if k not in taken and code not in used:
            out.append(code)
        k += 1
    return out


def _as_lines(barriers, crs) -> np.ndarray | None:
    if barriers is None:
        return None
    frames = barriers if isinstance(barriers, (list, tuple)) else [barriers]
    geoms = []
    for f in frames:
        if f is None or len(f) == 0:
            continue
        m = f.to_crs(crs).geometry
        m = m.where(~m.geom_type.isin(["Polygon", "MultiPolygon"]), m.boundary)
        geoms.extend(shapely.get_parts(m.to_numpy()).tolist())
    return np.asarray(geoms, dtype=object) if geoms else None


def _components_to_solve(atoms: Atoms, lo: int, hi: int, allow_exclaves: bool) -> tuple[np.ndarray, list[str]]:
    """Contiguity pairs plus virtual pairs so that no component has a total no grids can fit.

    A component of ``W`` households is infeasible when no ``k`` has ``k·lo ≤ W ≤ k·hi`` (fewer than
    ``lo``, or e.g. 501–599 for urban grids).

    An island across a barrier is joined through the barrier pair sharing most boundary with it; an
    island with no neighbour at all (a detached part of a multi-part community) is joined to the
    nearest atom with households elsewhere when ``allow_exclaves``, else left as it is.
    Returns the (k, 2) pairs and notes for the report.
    """
    pairs = atoms.contig
    notes: list[str] = []
    n = len(atoms)
    stuck: set[int] = set()
    ti, tj, tl = atoms.touch[:, 0], atoms.touch[:, 1], atoms.touch_len
    for _ in range(n):
        ncomp, comp = _Graph._labels(n, pairs[:, 0], pairs[:, 1])
        if ncomp <= 1:
            break
        wc = np.bincount(comp, weights=atoms.weight, minlength=ncomp)
        rep = np.full(ncomp, n, dtype=np.int64)
        np.minimum.at(rep, comp, np.arange(n))
        small = [c for c in np.argsort(wc, kind="stable")
                 if 0 < wc[c] and not grid_count(int(wc[c]), lo, hi)[1] and int(rep[c]) not in stuck]
        if not small:
            break
        c = small[0]
        across = (comp[ti] == c) != (comp[tj] == c)
        if across.any():
            k = int(np.argmax(np.where(across, tl, -1.0)))
            a, b = int(ti[k]), int(tj[k])
        else:
            idx = np.flatnonzero(comp == c)
            others = np.flatnonzero((comp != c) & (atoms.weight > 0))
            if not allow_exclaves or not len(others):
                stuck.add(int(rep[c]))
                continue
            d, jj = cKDTree(atoms.xy[others]).query(atoms.xy[idx])
            t = int(np.argmin(d))
            a, b = int(idx[t]), int(others[jj[t]])
            notes.append(f"a detached part with {int(wc[c])} households is joined to the nearest part ({d[t]:.0f} m away)")
        pairs = np.vstack([pairs, [[min(a, b), max(a, b)]]])
    return pairs, notes


def _locate(xy: np.ndarray, geoms: np.ndarray, nearest: bool = False) -> np.ndarray:
    """``atoms.locate_points`` with -1 for points in no geometry unless ``nearest``."""
    return locate_points(xy, geoms, nearest=nearest)


def _fill_labels(labels: np.ndarray, U: np.ndarray, V: np.ndarray, LL: np.ndarray) -> None:
    """Unlabelled atoms (-1) take, in rounds, the label they share most boundary with (in place).

    ``U, V, LL``: touching pairs in both directions and their shared length (m).
    """
    for _ in range(len(labels)):
        missing = labels[U] < 0
        ok = missing & (labels[V] >= 0)
        if not ok.any():
            return
        df = pd.DataFrame({"i": U[ok], "l": labels[V[ok]], "len": LL[ok]})
        best = df.groupby(["i", "l"], as_index=False)["len"].sum()
        best = best.sort_values(["i", "len", "l"], ascending=[True, False, True]).drop_duplicates("i")
        labels[best["i"].to_numpy()] = best["l"].to_numpy()


def _sub_edges(idx: np.ndarray, n: int, u: np.ndarray, v: np.ndarray, d: np.ndarray):
    """Edges with both ends in ``idx``, renumbered to positions in ``idx``."""
    pos = np.full(n, -1, dtype=np.int64)
    pos[idx] = np.arange(len(idx))
    pu, pv = pos[u], pos[v]
    k = (pu >= 0) & (pv >= 0)
    return pu[k], pv[k], d[k]


def _attach_piece(rows: list, piece, community_code: str, issues: list) -> None:
    """Give an empty piece of the community to the grid it shares most boundary with (else nearest)."""
    if not rows:
        rows.append({"gid": -1, "code": None, "geoms": [piece], "status": STATUS_NEW, "households": 0})
        return
    best, best_key = None, None
    for r in rows:
        gg = _union(r["geoms"]) if len(r["geoms"]) > 1 else r["geoms"][0]
        ln = shapely.length(shapely.intersection(shapely.boundary(piece), shapely.boundary(gg)))
        key = (-ln if ln >= 0.01 else 0.0, shapely.distance(piece, gg))
        if best_key is None or key < best_key:
            best, best_key = r, key
    best["geoms"].append(piece)
    if best_key[0] == 0.0 and shapely.area(piece) >= 1.0:
        issues.append({"community_code": community_code, "kind": "multipart",
                       "message": f"an empty detached piece of {shapely.area(piece):.0f} m² joins grid {best['code'] or '(new)'}"})


def _release_for_feasibility(region, old_arr, old_w, keep_mask, u_xy, u_w, u_old, lo: int, hi: int) -> list[int]:
    """Kept grids to give up so that every piece left to redraw has a feasible household total.

    Pieces are the parts of ``region`` outside the kept grids; a piece with households but no
    feasible count of in-band grids releases the kept grid sharing most boundary with it (fewest
    households on ties), and the pieces are recomputed, until all fit or nothing borders them.
    """
    keep = keep_mask.copy()
    released: list[int] = []
    # Only pieces inside a part of the community whose own total can be in band are worth it:
    # releasing grids in a detached part of 582 urban households only moves people.
    parts = np.asarray([p for p in shapely.get_parts(region) if shapely.area(p) > 0], dtype=object)
    at = _locate(u_xy, parts)
    part_w = np.bincount(at[at >= 0], weights=u_w[at >= 0], minlength=len(parts))
    hopeful = np.array([grid_count(int(x), lo, hi)[1] for x in part_w] + [False])
    for _ in range(int(keep.sum())):
        kept = np.flatnonzero(keep)
        if not len(kept):
            break
        left = _polygonal(shapely.difference(region, shapely.union_all(old_arr[kept], grid_size=PRECISION_M), grid_size=PRECISION_M))
        pieces = np.asarray([p for p in shapely.get_parts(left) if shapely.area(p) > 0], dtype=object)
        if not len(pieces):
            break
        free = ~np.isin(u_old, kept)
        where = _locate(u_xy[free], pieces)
        w = np.bincount(where[where >= 0], weights=u_w[free][where >= 0], minlength=len(pieces))
        bad = [i for i in np.argsort(-w, kind="stable") if w[i] > 0 and not grid_count(int(w[i]), lo, hi)[1]
               and hopeful[_locate(shapely.get_coordinates(shapely.point_on_surface(pieces[i:i + 1])), parts)[0]]]
        choice = None
        for i in bad:
            border = shapely.boundary(pieces[i])
            shared = shapely.length(shapely.intersection(border, shapely.boundary(old_arr[kept])))
            if shared.max(initial=0.0) >= 0.01:
                j = int(kept[np.lexsort((old_w[kept], -shared))[0]])
                choice = j
                break
        if choice is None:
            break
        keep[choice] = False
        released.append(choice)
    return released


def _polygonal(g):
    """The polygonal part of an overlay result (drops the lines and points a touching overlay adds)."""
    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    polys = [p for p in shapely.get_parts(g) if p.geom_type == "Polygon" and not p.is_empty]
    return shapely.multipolygons(polys) if len(polys) > 1 else (polys[0] if polys else shapely.Polygon())


def _union(geoms) -> object:
    """Union of atoms (metres). Atoms share identical edges on the 1 mm grid, so the fast coverage
    union is exact; if GEOS disagrees (area off by more than 1 m² or invalid) the overlay union is used."""
    geoms = np.asarray(geoms, dtype=object)
    try:
        u = shapely.coverage_union_all(geoms)
    except shapely.errors.GEOSException:  # a T-junction left by clipping: not a clean coverage
        u = None
    if u is not None and shapely.is_valid(u) and abs(shapely.area(u) - shapely.area(geoms).sum()) <= 1.0 and u.geom_type in ("Polygon", "MultiPolygon"):
        return u
    return shapely.union_all(geoms, grid_size=PRECISION_M)


def _community_kind(row, kind_column: str, default_kind: str) -> str:
    v = row.get(kind_column) if kind_column in row else None
    return v.strip().lower() if isinstance(v, str) and v.strip() else default_kind


def redraw(
    communities: gpd.GeoDataFrame,
    households: gpd.GeoDataFrame | None = None,
    *,
    current: gpd.GeoDataFrame | None = None,
    buildings: gpd.GeoDataFrame | None = None,
    barriers=None,
    band: tuple[int, int] | None = None,
    kind: str = "urban",
    kind_column: str = "kind",
    minimal_change: bool = True,
    release_kept: bool = False,
    seed: int = 0,
    h3_res: int | None = None,
    h3_res_range: tuple[int, int] = (10, 11),
    code_separator: str | None = None,
) -> RedrawResult:
    """Redraw the grids (网格) of every community so each holds a household count in band.

    Parameters
    ----------
    communities : GeoDataFrame (WGS84)
        Community (社区) polygons with ``code``; several rows with one code form one multi-part
        community. An optional ``kind`` column (``urban``/``rural``) selects the band per community.
    households : GeoDataFrame (WGS84), optional
        Household points, one per household. Optional only when ``buildings`` carry ``households``.
    current : GeoDataFrame (WGS84), optional
        Today's grids (``grid_code``; several rows per code are one grid). With
        ``minimal_change``, every grid in band is kept and only the rest is redrawn.
    buildings : GeoDataFrame (WGS84), optional
        Building footprints (or points); atoms become buildings. Households are counted per building
        by containment (else nearest building); without households the ``households`` column is used.
    barriers : GeoDataFrame or list of GeoDataFrames (WGS84), optional
        Lines (or polygons, by their outline) that grids should not straddle: rivers, arterial roads.
    band : (int, int), optional
        ``(min, max)`` households; default from the community's kind (urban 300–500, rural 100–200).
    kind : str
        Kind for communities without a ``kind`` value.
    minimal_change : bool
        Keep in-band current grids (only meaningful with ``current``).
    release_kept : bool
        When a piece left to redraw (between kept grids) has a household total no set of in-band
        grids fits, also redraw the kept grid sharing most boundary with it, one at a time, until it
        fits (reported as ``released``). Off by default: every in-band grid then stays untouched.
    seed : int
        Seed of the random parts (direction offsets, spanning trees); same seed, same output.
    h3_res : int, optional
        Force an H3 resolution; by default chosen per community from density in ``h3_res_range``.
    code_separator : str, optional
        Between community code and sequence; default ``""`` for numeric codes, else ``"-"``.

    Returns
    -------
    RedrawResult
    """
    if households is None and buildings is None:
        raise ValueError("redraw needs households or buildings with a households count")
    crs = metric_crs(communities)
    comm = communities.to_crs(crs)
    comm = comm[comm.geometry.notna() & ~comm.geometry.is_empty].copy()
    comm["geometry"] = shapely.make_valid(comm.geometry.to_numpy())
    comm["code"] = comm["code"].astype(str)
    kinds, comm_geom = {}, {}
    for code, grp in comm.groupby("code", sort=True):
        kinds[code] = _community_kind(grp.iloc[0], kind_column, kind)
        comm_geom[code] = shapely.set_precision(_polygonal(shapely.union_all(grp.geometry.to_numpy())), PRECISION_M)
    codes = sorted(comm_geom)
    comm_arr = np.array([comm_geom[c] for c in codes], dtype=object)
    issues: list[dict] = []

    # Units that carry households: household points (weight 1) or buildings (their count).
    n_hh = 0 if households is None else len(households)
    hh_xy = shapely.get_coordinates(households.to_crs(crs).geometry.to_numpy()).reshape(-1, 2) if n_hh else np.zeros((0, 2))
    hh_comm = _locate(hh_xy, comm_arr)
    if n_hh and (hh_comm < 0).any():
        issues.append({"community_code": None, "kind": "outside", "message": f"{int((hh_comm < 0).sum())} households lie outside every community and were not assigned"})
    n_b = 0 if buildings is None else len(buildings)
    b_pts = np.zeros((0, 2))
    b_comm = np.zeros(0, dtype=np.int64)
    b_weight = np.zeros(0, dtype=np.int64)
    b_of_hh = np.full(n_hh, -1, dtype=np.int64)
    if buildings is not None:
        b_geom = buildings.to_crs(crs).geometry.to_numpy()
        b_pts = shapely.get_coordinates(shapely.point_on_surface(b_geom)).reshape(-1, 2)
        b_comm = _locate(b_pts, comm_arr)
        if n_hh:
            b_of_hh = _locate(hh_xy, b_geom, nearest=False)
            # Outside every footprint, or in a footprint filed under another community: nearest building of its own community.
            bad = np.flatnonzero((b_of_hh < 0) | (b_comm[np.maximum(b_of_hh, 0)] != hh_comm))
            for ci in np.unique(hh_comm[bad]):
                rows = bad[hh_comm[bad] == ci]
                cand = np.flatnonzero(b_comm == ci) if ci >= 0 else np.zeros(0, dtype=np.int64)
                if ci >= 0 and len(cand):
                    b_of_hh[rows] = cand[cKDTree(b_pts[cand]).query(hh_xy[rows])[1]]
                else:
                    b_of_hh[rows] = -1
            b_weight = np.bincount(b_of_hh[b_of_hh >= 0], minlength=n_b).astype(np.int64)
        else:
            if "households" not in buildings.columns:
                raise ValueError("buildings need a 'households' column when no households are given")
            b_weight = buildings["households"].fillna(0).to_numpy().astype(np.int64)
    barrier_lines = _as_lines(barriers, crs)

    # Today's grids: one geometry per code, filed under the community it overlaps most.
    cur_codes: list[str] = []
    cur_geoms = np.zeros(0, dtype=object)
    cur_home = np.zeros(0, dtype=np.int64)
    if current is not None and len(current):
        cm_ = current.to_crs(crs)
        cm_ = cm_[cm_.geometry.notna() & ~cm_.geometry.is_empty].copy()
        cm_["geometry"] = shapely.make_valid(cm_.geometry.to_numpy())
        cm_["grid_code"] = cm_["grid_code"].astype(str)
        cur = cm_.dissolve("grid_code", as_index=False, sort=True)
        cur_codes = cur["grid_code"].tolist()
        cur_geoms = shapely.set_precision(np.array([_polygonal(g) for g in cur.geometry.to_numpy()], dtype=object), PRECISION_M)
        gi, ci_ = shapely.STRtree(comm_arr).query(cur_geoms, predicate="intersects")
        ov = shapely.area(shapely.intersection(cur_geoms[gi], comm_arr[ci_]))
        cur_home = np.full(len(cur_codes), -1, dtype=np.int64)
        best = pd.DataFrame({"g": gi, "c": ci_, "a": ov}).sort_values(["g", "a", "c"], ascending=[True, False, True]).drop_duplicates("g")
        best = best[best["a"] > 0]
        cur_home[best["g"].to_numpy()] = best["c"].to_numpy()
    cur_code_arr = np.array(cur_codes + [None], dtype=object)
    hh_old = cur_code_arr[_locate(hh_xy, cur_geoms, nearest=False)] if len(cur_codes) else np.full(n_hh, None, dtype=object)
    b_old = cur_code_arr[_locate(b_pts, cur_geoms, nearest=False)] if len(cur_codes) else np.full(n_b, None, dtype=object)
    minimal = minimal_change and len(cur_codes) > 0

    hh_code = np.full(n_hh, None, dtype=object)
    b_code = np.full(n_b, None, dtype=object)
    grid_rows = []
    empty = np.zeros(0, dtype=np.int64)

    def groups(labels):
        order = np.argsort(labels, kind="stable")
        keys, starts = np.unique(labels[order], return_index=True)
        return {int(k): part for k, part in zip(keys, np.split(order, starts[1:]))}

    hh_groups, b_groups = groups(hh_comm), groups(b_comm)
    for ci, code in enumerate(codes):
        lo, hi = band if band is not None else grid_band(kinds[code])
        rng = np.random.default_rng([seed, zlib.crc32(code.encode())])
        region = comm_geom[code]
        hh_here = hh_groups.get(ci, empty)
        b_here = b_groups.get(ci, empty)
        # Unit = household (weight 1) if given, else building (weight = its count).
        if n_hh:
            u_idx, u_xy, u_w = hh_here, hh_xy[hh_here], np.ones(len(hh_here), dtype=np.int64)
        else:
            u_idx, u_xy, u_w = b_here, b_pts[b_here], b_weight[b_here]
        u_code = hh_code if n_hh else b_code
        # Today's grids of this community, clipped to it in code order (overlaps go to the smaller code).
        old_codes, old_geoms, taken = [], [], None
        for j in np.flatnonzero(cur_home == ci):
            piece = _polygonal(shapely.intersection(cur_geoms[j], region, grid_size=PRECISION_M))
            if taken is not None:
                piece = _polygonal(shapely.difference(piece, taken, grid_size=PRECISION_M))
            taken = piece if taken is None else shapely.union(taken, piece, grid_size=PRECISION_M)
            if shapely.area(piece) > 0:
                old_codes.append(cur_codes[j])
                old_geoms.append(piece)
        old_arr = np.array(old_geoms, dtype=object)
        u_old = _locate(u_xy, old_arr, nearest=False)
        old_w = np.bincount(u_old[u_old >= 0], weights=u_w[u_old >= 0], minlength=len(old_codes)).astype(np.int64)
        keep_mask = (old_w >= lo) & (old_w <= hi) if minimal else np.zeros(len(old_codes), dtype=bool)
        if release_kept and keep_mask.any():
            for j in _release_for_feasibility(region, old_arr, old_w, keep_mask, u_xy, u_w, u_old, lo, hi):
                keep_mask[j] = False
                issues.append({"community_code": code, "kind": "released",
                               "message": f"grid {old_codes[j]} ({int(old_w[j])} households, in band) is redrawn too, "
                                          "so that its neighbours can be brought into band"})
        kept = np.flatnonzero(keep_mask)
        in_kept = np.isin(u_old, kept)
        for j in kept:
            u_code[u_idx[u_old == j]] = old_codes[j]
        if buildings is not None and n_hh:
            # Buildings follow their households' grid where kept.
            b_old_local = _locate(b_pts[b_here], old_arr, nearest=False)
            for j in kept:
                b_code[b_here[b_old_local == j]] = old_codes[j]
            b_left = b_here[~np.isin(b_old_local, kept)]
        else:
            b_left = u_idx[~in_kept] if buildings is not None else np.zeros(0, dtype=np.int64)
        leftover = region
        if len(kept):
            leftover = _polygonal(shapely.difference(region, shapely.union_all(old_arr[kept], grid_size=PRECISION_M), grid_size=PRECISION_M))
        left = np.flatnonzero(~in_kept)  # units to draw (positions in u_*)
        rows_here = [
            {"gid": int(j), "code": old_codes[j], "geoms": [old_geoms[j]], "status": STATUS_KEPT, "households": int(old_w[j])}
            for j in kept
        ]
        atoms = None
        b_atom = None  # set only when the leftover is tiled by building atoms
        if not leftover.is_empty and shapely.area(leftover) > 0:
            if buildings is not None and len(b_left):
                atoms, b_atom = building_atoms(leftover, b_pts[b_left], b_weight[b_left], hi, barrier_lines)
                pos = np.full(n_b, -1, dtype=np.int64)
                pos[b_left] = np.arange(len(b_left))
                bu = b_of_hh[u_idx[left]] if n_hh else u_idx[left]
                pb = pos[np.maximum(bu, 0)]
                u_atom = np.where((bu >= 0) & (pb >= 0), b_atom[np.maximum(pb, 0)], -1)
                if n_hh:
                    # A building above the band's max has several territories (west to east):
                    # its households are shared among them evenly, west to east.
                    src, cnt = np.unique(atoms.source[atoms.source >= 0], return_counts=True)
                    for sb in src[cnt > 1]:
                        parts_b = np.flatnonzero(atoms.source == sb)
                        parts_b = parts_b[np.argsort(atoms.xy[parts_b, 0], kind="stable")]
                        rows = np.flatnonzero(pb == sb)
                        rows = rows[np.argsort(u_xy[left][rows, 0], kind="stable")]
                        for part, chunk in zip(parts_b, np.array_split(rows, len(parts_b))):
                            u_atom[chunk] = part
                    atoms.weight = np.bincount(u_atom[u_atom >= 0], minlength=len(atoms)).astype(np.int64)
            else:
                res = h3_res or choose_h3_res(int(u_w[left].sum()), shapely.area(leftover), lo, h3_res_range)
                atoms, u_atom = h3_atoms(leftover, crs, u_xy[left], res, barrier_lines)
                if not n_hh:
                    atoms.weight = np.bincount(u_atom, weights=u_w[left], minlength=len(atoms)).astype(np.int64)
        if atoms is not None and len(atoms):
            n = len(atoms)
            # Where each atom's households are today (local old grid, drawn grids only) and how many.
            old_id = np.full(n, -1, dtype=np.int64)
            stay_w = np.zeros(n, dtype=np.int64)
            uo = u_old[left]
            ok = (u_atom >= 0) & (uo >= 0)
            if minimal and ok.any():
                pairs = pd.DataFrame({"a": u_atom[ok], "o": uo[ok], "w": u_w[left][ok]}).groupby(["a", "o"], as_index=False)["w"].sum()
                pairs = pairs.sort_values(["a", "w", "o"], ascending=[True, False, True]).drop_duplicates("a")
                old_id[pairs["a"].to_numpy()] = pairs["o"].to_numpy()
                stay_w[pairs["a"].to_numpy()] = pairs["w"].to_numpy()
            if minimal and len(old_codes):
                unknown = np.flatnonzero(old_id < 0)
                if len(unknown):
                    old_id[unknown] = _locate(atoms.xy[unknown], old_arr, nearest=False)
                old_id[np.isin(old_id, kept)] = -1
            C, notes = _components_to_solve(atoms, lo, hi, allow_exclaves=not minimal)
            issues.extend({"community_code": code, "kind": "multipart", "message": m} for m in notes)
            ncomp, comp = _Graph._labels(n, C[:, 0], C[:, 1])
            wc = np.bincount(comp, weights=atoms.weight, minlength=ncomp)
            cu_all, cv_all, cd_all = C[:, 0], C[:, 1], np.ones(len(C))
            lu_all, lv_all, ll_all = atoms.touch[:, 0], atoms.touch[:, 1], atoms.touch_len
            labels = np.full(n, -1, dtype=np.int64)
            next_id = len(old_codes)
            used_old: set[int] = set()
            for c in np.flatnonzero(wc > 0):
                idx = np.flatnonzero(comp == c)
                cu, cv, _ = _sub_edges(idx, n, cu_all, cv_all, cd_all)
                lu, lv, ll = _sub_edges(idx, n, lu_all, lv_all, ll_all)
                g = _Graph(
                    w=atoms.weight[idx].astype(float), xy=atoms.xy[idx], area=atoms.area[idx], perim=atoms.perimeter[idx],
                    cu=cu, cv=cv, lu=lu, lv=lv, ll=ll, lo=lo, hi=hi, rng=rng,
                )
                if minimal:
                    lab, feasible = solve_minimal(g, old_id[idx], stay_w[idx], next_id)
                else:
                    lab, feasible = solve_fresh(g)
                    lab = lab + next_id
                # Renumber new groups densely; old ids (< len(old_codes)) stay.
                for u in np.unique(lab):
                    if u < len(old_codes) and int(u) not in used_old:
                        used_old.add(int(u))
                    else:
                        lab[lab == u] = -(next_id + 2)
                        next_id += 1
                lab = np.where(lab < -1, -lab - 2, lab)
                labels[idx] = lab
                if not feasible:
                    k = len(np.unique(lab))
                    issues.append({
                        "community_code": code, "kind": "infeasible",
                        "message": f"{int(wc[c])} households"
                        + (" left between kept grids" if len(kept) else "")
                        + f" cannot be cut into grids of {lo}–{hi}; drawn as "
                        + ("one grid" if k == 1 else f"{k} grids") + " out of band"
                        + (" (release_kept / --release lets neighbouring in-band grids change)" if len(kept) and not release_kept else ""),
                    })
                _, inv = np.unique(lab, return_inverse=True)
                still_out = (band_violation(np.bincount(inv.ravel(), weights=atoms.weight[idx]), lo, hi) > 0).any()
                if g.failures and feasible and still_out:
                    issues.append({"community_code": code, "kind": "split_failed",
                                   "message": f"no in-band contiguous cut found for parts of {sorted(set(g.failures))} households"})
            _fill_labels(labels, np.r_[lu_all, lv_all], np.r_[lv_all, lu_all], np.r_[ll_all, ll_all])
            for gid in np.unique(labels[labels >= 0]):
                sel = np.flatnonzero(labels == gid)
                is_old = gid < len(old_codes)
                rows_here.append({
                    "gid": int(gid), "code": old_codes[gid] if is_old else None, "geoms": list(atoms.geoms[sel]),
                    "status": STATUS_REDRAWN if is_old else STATUS_NEW, "households": int(atoms.weight[sel].sum()),
                })
            for p in np.flatnonzero(labels < 0):
                _attach_piece(rows_here, atoms.geoms[p], code, issues)
        elif not leftover.is_empty and shapely.area(leftover) > 0:
            for piece in shapely.get_parts(leftover):
                _attach_piece(rows_here, piece, code, issues)
        # Codes: kept and redrawn grids keep theirs; new ones north to south, west to east.
        for r in rows_here:
            r["geom"] = _union(r["geoms"]) if len(r["geoms"]) > 1 else r["geoms"][0]
        new_rows = [r for r in rows_here if r["code"] is None]
        cent = [shapely.get_coordinates(shapely.point_on_surface(r["geom"]))[0] for r in new_rows]
        order = sorted(range(len(new_rows)), key=lambda t: (-round(float(cent[t][1])), round(float(cent[t][0]))))
        for t, c in zip(order, _seq_codes(code, set(old_codes), len(new_rows), code_separator)):
            new_rows[t]["code"] = c
        if atoms is not None and len(atoms):
            gid_code = np.array([None] * (int(labels.max()) + 2 if len(labels) else 1), dtype=object)
            for r in rows_here:
                if r["status"] != STATUS_KEPT and r["gid"] >= 0:
                    gid_code[r["gid"]] = r["code"]
            lab_u = np.where(u_atom >= 0, labels[np.maximum(u_atom, 0)], -1)
            u_code[u_idx[left]] = gid_code[lab_u]
            if b_atom is not None and n_hh:
                b_code[b_left] = gid_code[labels[b_atom]]
        old_u = hh_old[u_idx] if n_hh else b_old[u_idx]
        for r in rows_here:
            mine = u_code[u_idx] == r["code"]
            moved = int(u_w[mine & pd.notna(old_u) & (old_u != r["code"])].sum())
            grid_rows.append({
                "grid_code": r["code"], "community_code": code, "households": int(u_w[mine].sum()), "kind": kinds[code],
                "band_min": lo, "band_max": hi, "moved": moved, "status": r["status"], "geometry": r["geom"],
            })
        unplaced = int(pd.isna(u_code[u_idx]).sum())
        if unplaced:
            issues.append({"community_code": code, "kind": "unassigned", "message": f"{unplaced} units could not be placed in a grid"})

    out = gpd.GeoDataFrame(grid_rows, geometry="geometry", crs=crs) if grid_rows else gpd.GeoDataFrame(
        {"grid_code": [], "community_code": [], "households": [], "kind": [], "band_min": [], "band_max": [], "moved": [], "status": []},
        geometry=gpd.GeoSeries([], crs=crs),
    )
    out["in_band"] = (out["households"] >= out["band_min"]) & (out["households"] <= out["band_max"])
    out["polsby_popper"] = polsby_popper(out.geometry.to_numpy())
    cols = ["grid_code", "community_code", "households", "kind", "band_min", "band_max", "in_band", "polsby_popper", "moved", "status", "geometry"]
    out = out[cols].to_crs(WGS84)
    summary = {
        "grids": int(len(out)),
        "in_band_pct": float(100.0 * out["in_band"].mean()) if len(out) else 0.0,
        "mean_polsby_popper": float(out["polsby_popper"].mean()) if len(out) else 0.0,
        "households": int(out["households"].sum()),
        "moved": int(out["moved"].sum()),
        "kept": int((out["status"] == STATUS_KEPT).sum()),
        "infeasible_communities": sorted({i["community_code"] for i in issues if i["kind"] == "infeasible"}),
    }
    return RedrawResult(
        grids=out,
        households=pd.Series(hh_code, index=households.index if households is not None else pd.RangeIndex(0), dtype=object),
        issues=issues,
        summary=summary,
        buildings=pd.Series(b_code, index=buildings.index, dtype=object) if buildings is not None else None,
    )


# ---------------------------------------------------------------------------------------------
# What-if edits for planners


@dataclass
class EditResult:
    """Outcome of ``preview_edit`` (nothing is saved).

    Attributes
    ----------
    grids : GeoDataFrame (WGS84)
        The grids the edit touches (target first): ``grid_code``, ``community_code``,
        ``households_before``, ``households``, ``band_min``, ``band_max``, ``in_band``,
        ``contiguous`` (one polygon), ``polsby_popper``, ``removed`` (nothing left), geometry.
    moved : DataFrame
        ``household_id``, ``from_grid``, ``to_grid`` of every household that changes grid.
    issues : list of str
        E.g. parts of the selection outside the target's community (not moved).
    """

    grids: gpd.GeoDataFrame
    moved: pd.DataFrame
    issues: list


def preview_edit(
    grids: gpd.GeoDataFrame,
    households: gpd.GeoDataFrame,
    to_grid: str,
    *,
    cells=None,
    areas=None,
    band: tuple[int, int] | None = None,
) -> EditResult:
    """Move H3 cells and/or areas (e.g. building footprints) into grid ``to_grid``: what would change.

    Parameters
    ----------
    grids : GeoDataFrame (WGS84)
        Grids of (at least) the target's community: ``grid_code``, optional ``community_code``,
        ``kind``. Grids never cross a community boundary, so only ground of grids in the target's
        community moves; the rest of the selection is reported and ignored.
    households : GeoDataFrame (WGS84)
        Household points with ``household_id`` and ``grid_code`` (located in ``grids`` if missing).
    to_grid : str
        Code of the receiving grid.
    cells : iterable of H3 indexes (int or str, any resolution), optional
    areas : iterable of shapely geometries (WGS84), optional
    band : (int, int), optional
        Household band; by default from each grid's ``kind`` (urban 300–500, rural 100–200).

    Returns
    -------
    EditResult
    """
    from gridmap.cells import cell_polygon

    codes = grids["grid_code"].astype(str)
    if to_grid not in set(codes):
        raise ValueError(f"grid {to_grid!r} does not exist")
    shapes = [cell_polygon(c) for c in (cells or [])] + [g for g in (areas or []) if g is not None and not g.is_empty]
    if not shapes:
        raise ValueError("nothing to move: give H3 cells or areas")
    crs = metric_crs(grids)
    gm = grids.assign(grid_code=codes).to_crs(crs)
    gm = gm.dissolve("grid_code", as_index=False, sort=True) if not gm["grid_code"].is_unique else gm.reset_index(drop=True)
    geoms = shapely.set_precision(shapely.make_valid(gm.geometry.to_numpy()), PRECISION_M)
    sel = gpd.GeoSeries(shapes, crs=WGS84).to_crs(crs).to_numpy()
    moved_area = shapely.set_precision(shapely.union_all(shapely.make_valid(sel)), PRECISION_M)
    t = int(np.flatnonzero(gm["grid_code"].to_numpy() == to_grid)[0])
    comm = gm["community_code"].astype(object).to_numpy() if "community_code" in gm.columns else np.full(len(gm), None, dtype=object)
    same = np.array([(comm[i] == comm[t]) or (comm[t] is None) for i in range(len(gm))])
    region = shapely.union_all(geoms[same], grid_size=PRECISION_M)
    take = shapely.difference(shapely.intersection(moved_area, region, grid_size=PRECISION_M), geoms[t], grid_size=PRECISION_M)
    issues = []
    outside = shapely.difference(moved_area, region, grid_size=PRECISION_M)
    if shapely.area(outside) >= 1.0:
        issues.append(f"{shapely.area(outside):.0f} m² of the selection lie outside community {comm[t]} and are not moved")
    hit = [i for i in np.flatnonzero(same) if i != t and shapely.area(shapely.intersection(geoms[i], take)) > 0]
    after = {i: shapely.difference(geoms[i], take, grid_size=PRECISION_M) for i in hit}
    after[t] = shapely.union(geoms[t], take, grid_size=PRECISION_M)
    # Households: today's grid, and who stands on the moved ground.
    hm = households.to_crs(crs)
    xy = shapely.get_coordinates(hm.geometry.to_numpy()).reshape(-1, 2)
    if "grid_code" in hm.columns and hm["grid_code"].notna().all():
        old = hm["grid_code"].astype(str).to_numpy()
    else:
        loc = _locate(xy, geoms)
        old = np.where(loc >= 0, gm["grid_code"].to_numpy()[np.maximum(loc, 0)], None)
    src_codes = {gm["grid_code"].iloc[i] for i in hit}
    on_take = shapely.intersects_xy(take, xy[:, 0], xy[:, 1]) if len(xy) else np.zeros(0, dtype=bool)
    moving = on_take & np.isin(old.astype(object), list(src_codes))
    moved = pd.DataFrame({"household_id": hm["household_id"].to_numpy()[moving], "from_grid": old[moving], "to_grid": to_grid})
    rows = []
    for i in [t] + hit:
        code = gm["grid_code"].iloc[i]
        k = gm["kind"].iloc[i] if "kind" in gm.columns else None
        lo, hi = band if band is not None else grid_band(k if isinstance(k, str) else None)
        before_n = int(np.sum(old == code))
        delta = len(moved) if i == t else -int(np.sum(moved["from_grid"].to_numpy() == code))
        geom = after[i]
        rows.append({
            "grid_code": code, "community_code": comm[i], "households_before": before_n, "households": before_n + delta,
            "band_min": lo, "band_max": hi, "contiguous": geom.geom_type == "Polygon" and not geom.is_empty,
            "removed": bool(geom.is_empty or shapely.area(geom) == 0), "geometry": geom,
        })
    out = gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)
    out["in_band"] = (out["households"] >= out["band_min"]) & (out["households"] <= out["band_max"])
    out["polsby_popper"] = polsby_popper(out.geometry.to_numpy())
    for r in out.itertuples():
        if r.removed and r.households > 0:
            issues.append(f"grid {r.grid_code} would have no ground left but {r.households} households")
    cols = ["grid_code", "community_code", "households_before", "households", "band_min", "band_max", "in_band",
            "contiguous", "polsby_popper", "removed", "geometry"]
    return EditResult(grids=out[cols].to_crs(WGS84), moved=moved, issues=issues)
