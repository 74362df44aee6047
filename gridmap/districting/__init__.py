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
and get the new counts, contiguity and compactness of every grid touched, without saving. Locked grids
are never changed (``LockedGrids`` when the target is one, or a selected cell's centre lies in one:
``shape_grids``), and buildings known by their 楼栋 label that the edit would split are listed (or,
with ``whole_buildings``, taken whole).

Everything runs in the local UTM zone (metres); input and output are WGS84 (EPSG:4326). The result
depends only on the inputs and ``seed`` (NumPy ``default_rng`` seeded per community).


Modules
-------
``orchestrator`` (``redraw``: prepare, each community, report) · ``inputs`` (the city in metres) ·
``community`` (one community, steps 1–7) · ``territories`` (atoms of the leftover) · ``islands``
(step 2) · ``bands`` (step 3) · ``graph`` (the atom graph) · ``bisection`` (step 4) ·
``local_search`` (step 5) · ``minimal_change`` (step 6) · ``geometry``, ``codes`` (step 7) ·
``report`` (the result) · ``edits`` (``preview_edit``) · ``address_buildings`` (buildings by 楼栋 label).
"""

from gridmap.districting.bands import band_violation, grid_count
from gridmap.districting.bisection import (
    N_DIRECTIONS,
    N_TREES,
    bisect,
    partition,
    solve_fresh,
)
from gridmap.districting.edits import EditResult, LockedGrids, preview_edit, shape_grids
from gridmap.districting.graph import AtomGraph
from gridmap.districting.local_search import LOCAL_SEARCH_PASSES, improve
from gridmap.districting.minimal_change import solve_minimal
from gridmap.districting.orchestrator import redraw
from gridmap.districting.report import (
    STATUS_KEPT,
    STATUS_NEW,
    STATUS_REDRAWN,
    RedrawResult,
)

__all__ = [
    "LOCAL_SEARCH_PASSES",
    "N_DIRECTIONS",
    "N_TREES",
    "STATUS_KEPT",
    "STATUS_NEW",
    "STATUS_REDRAWN",
    "AtomGraph",
    "EditResult",
    "LockedGrids",
    "RedrawResult",
    "band_violation",
    "bisect",
    "grid_count",
    "improve",
    "partition",
    "preview_edit",
    "shape_grids",
    "redraw",
    "solve_fresh",
    "solve_minimal",
]
