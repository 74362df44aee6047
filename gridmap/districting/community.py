"""Redraw of one community (社区): keep in-band grids, tile the rest with atoms, solve, name (steps 1–7).

Metres throughout (the city's UTM zone). ``City`` (``inputs``) holds the prepared inputs and the
code arrays this fills in; a grid never crosses the community's boundary.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from gridmap.atoms import PRECISION_M, locate_points
from gridmap.contract import grid_band
from gridmap.districting.bands import band_violation
from gridmap.districting.bisection import solve_fresh
from gridmap.districting.codes import code_of_label, name_new_grids
from gridmap.districting.geometry import attach_piece, polygonal, union_atoms
from gridmap.districting.graph import (
    AtomGraph,
    component_labels,
    fill_labels,
    sub_edges,
)
from gridmap.districting.inputs import City
from gridmap.districting.islands import components_to_solve
from gridmap.districting.minimal_change import release_for_feasibility, solve_minimal
from gridmap.districting.report import (
    STATUS_KEPT,
    STATUS_NEW,
    STATUS_REDRAWN,
    infeasible_message,
)
from gridmap.districting.territories import building_territories, cell_territories


@dataclass
class Options:
    """Switches of a redraw (see ``redraw``): band override, minimal change, release, seed, H3, codes."""

    band: tuple[int, int] | None
    minimal: bool
    release_kept: bool
    seed: int
    h3_res: int | None
    h3_res_range: tuple[int, int]
    code_separator: str | None


class CommunityRedraw:
    """State of one community's redraw; ``run()`` returns its grid rows (metres) and fills the codes."""

    def __init__(self, city: City, index: int, households_here, buildings_here, options: Options, issues: list):
        self.city, self.options, self.issues = city, options, issues
        self.code = city.codes[index]
        self.index = index
        self.band_min, self.band_max = options.band if options.band is not None else grid_band(city.kinds[self.code])
        self.rng = np.random.default_rng([options.seed, zlib.crc32(self.code.encode())])
        self.region = city.shapes[self.code]
        self.buildings_here = buildings_here
        # Unit = household (1 each) if households are given, else building (its count).
        if city.n_households:
            self.unit_index, self.unit_households = households_here, np.ones(len(households_here), dtype=np.int64)
            self.unit_xy, self.unit_code = city.household_xy[households_here], city.household_code
        else:
            self.unit_index, self.unit_households = buildings_here, city.building_households[buildings_here]
            self.unit_xy, self.unit_code = city.building_xy[buildings_here], city.building_code

    def run(self) -> list[dict]:
        self._clip_todays_grids()
        kept = self._kept_grids()
        buildings_left = self._file_kept(kept)
        leftover = self.region
        if len(kept):
            kept_union = shapely.union_all(self.old_geoms[kept], grid_size=PRECISION_M)
            leftover = polygonal(shapely.difference(self.region, kept_union, grid_size=PRECISION_M))
        left = np.flatnonzero(~np.isin(self.unit_old, kept))  # units to draw (positions in unit_*)
        drafts = [{"gid": int(j), "code": self.old_codes[j], "geoms": [self.old_geoms[j]], "status": STATUS_KEPT,
                   "households": int(self.old_households[j])} for j in kept]
        atoms, unit_atom, building_atom, labels = None, None, None, None
        if not leftover.is_empty and shapely.area(leftover) > 0:
            atoms, unit_atom, building_atom = self._atoms(leftover, left, buildings_left)
        if atoms is not None and len(atoms):
            labels = self._label_atoms(atoms, unit_atom, left, kept)
            self._drafts_from_labels(drafts, atoms, labels)
        elif not leftover.is_empty and shapely.area(leftover) > 0:
            for piece in shapely.get_parts(leftover):
                attach_piece(drafts, piece, self.code, self.issues, STATUS_NEW)
        for draft in drafts:
            draft["geom"] = union_atoms(draft["geoms"]) if len(draft["geoms"]) > 1 else draft["geoms"][0]
        name_new_grids(drafts, self.code, set(self.old_codes), self.options.code_separator)
        if labels is not None:
            self._file_drawn(drafts, labels, unit_atom, left, buildings_left, building_atom)
        return self._grid_rows(drafts)

    def _clip_todays_grids(self) -> None:
        """Today's grids of this community, clipped to it in code order (overlaps go to the smaller code)."""
        city = self.city
        codes, geoms, taken = [], [], None
        for j in np.flatnonzero(city.current_home == self.index):
            piece = polygonal(shapely.intersection(city.current_geoms[j], self.region, grid_size=PRECISION_M))
            if taken is not None:
                piece = polygonal(shapely.difference(piece, taken, grid_size=PRECISION_M))
            taken = piece if taken is None else shapely.union(taken, piece, grid_size=PRECISION_M)
            if shapely.area(piece) > 0:
                codes.append(city.current_codes[j])
                geoms.append(piece)
        self.old_codes, self.old_geoms = codes, np.array(geoms, dtype=object)
        self.unit_old = locate_points(self.unit_xy, self.old_geoms, nearest=False)
        has_old = self.unit_old >= 0
        self.old_households = np.bincount(self.unit_old[has_old], weights=self.unit_households[has_old],
                                          minlength=len(codes)).astype(np.int64)

    def _kept_grids(self) -> np.ndarray:
        """Indexes of today's grids kept as they are: in band (minimal change), less any released."""
        count = self.old_households
        if self.options.minimal:
            keep = (count >= self.band_min) & (count <= self.band_max)
        else:
            keep = np.zeros(len(self.old_codes), dtype=bool)
        if self.options.release_kept and keep.any():
            for j in release_for_feasibility(self.region, self.old_geoms, count, keep, self.unit_xy, self.unit_households,
                                             self.unit_old, self.band_min, self.band_max):
                keep[j] = False
                self.issues.append({"community_code": self.code, "kind": "released",
                                    "message": f"grid {self.old_codes[j]} ({int(count[j])} households, in band) is redrawn "
                                               "too, so that its neighbours can be brought into band"})
        return np.flatnonzero(keep)

    def _file_kept(self, kept: np.ndarray) -> np.ndarray:
        """Units (and buildings) in kept grids take their codes; returns the buildings left to draw."""
        city = self.city
        for j in kept:
            self.unit_code[self.unit_index[self.unit_old == j]] = self.old_codes[j]
        if not city.has_buildings:
            return np.zeros(0, dtype=np.int64)
        if not city.n_households:
            return self.unit_index[~np.isin(self.unit_old, kept)]
        # Buildings follow their households' grid where kept.
        building_old = locate_points(city.building_xy[self.buildings_here], self.old_geoms, nearest=False)
        for j in kept:
            city.building_code[self.buildings_here[building_old == j]] = self.old_codes[j]
        return self.buildings_here[~np.isin(building_old, kept)]

    def _atoms(self, leftover, left, buildings_left):
        """Atoms of the leftover: buildings when there are buildings left to draw, else H3 cells."""
        city = self.city
        if city.has_buildings and len(buildings_left):
            unit_building = city.household_building[self.unit_index[left]] if city.n_households else self.unit_index[left]
            return building_territories(city, leftover, buildings_left, unit_building, self.unit_xy[left], self.band_max)
        atoms, unit_atom = cell_territories(city, leftover, self.unit_xy[left], self.unit_households[left], self.band_min,
                                            self.options.h3_res, self.options.h3_res_range)
        return atoms, unit_atom, None

    def _today_per_atom(self, atoms, unit_atom, left, kept):
        """Where each atom's households are today (local old grid, drawn grids only) and how many."""
        n = len(atoms)
        old_id = np.full(n, -1, dtype=np.int64)
        stay_households = np.zeros(n, dtype=np.int64)
        if not self.options.minimal:
            return old_id, stay_households
        unit_old = self.unit_old[left]
        ok = (unit_atom >= 0) & (unit_old >= 0)
        if ok.any():
            pairs = (pd.DataFrame({"a": unit_atom[ok], "o": unit_old[ok], "w": self.unit_households[left][ok]})
                     .groupby(["a", "o"], as_index=False)["w"].sum()
                     .sort_values(["a", "w", "o"], ascending=[True, False, True]).drop_duplicates("a"))
            old_id[pairs["a"].to_numpy()] = pairs["o"].to_numpy()
            stay_households[pairs["a"].to_numpy()] = pairs["w"].to_numpy()
        if len(self.old_codes):
            unknown = np.flatnonzero(old_id < 0)
            if len(unknown):
                old_id[unknown] = locate_points(atoms.xy[unknown], self.old_geoms, nearest=False)
            old_id[np.isin(old_id, kept)] = -1
        return old_id, stay_households

    def _label_atoms(self, atoms, unit_atom, left, kept) -> np.ndarray:
        """Grid label per atom: each feasible-joined component solved fresh or by minimal change."""
        old_id, stay_households = self._today_per_atom(atoms, unit_atom, left, kept)
        pairs, notes = components_to_solve(atoms, self.band_min, self.band_max, allow_exclaves=not self.options.minimal)
        self.issues.extend({"community_code": self.code, "kind": "multipart", "message": m} for m in notes)
        n = len(atoms)
        n_components, component = component_labels(n, pairs[:, 0], pairs[:, 1])
        component_households = np.bincount(component, weights=atoms.weight, minlength=n_components)
        labels = np.full(n, -1, dtype=np.int64)
        self.next_id = len(self.old_codes)
        self.used_old: set[int] = set()
        for c in np.flatnonzero(component_households > 0):
            members = np.flatnonzero(component == c)
            graph = self._graph(atoms, pairs, members)
            if self.options.minimal:
                label, feasible = solve_minimal(graph, old_id[members], stay_households[members], self.next_id)
            else:
                label, feasible = solve_fresh(graph)
                label = label + self.next_id
            labels[members] = self._renumber(label)
            self._note_component(graph, labels[members], atoms.weight[members], feasible, int(component_households[c]), kept)
        fill_labels(labels, *_touch_both_ways(atoms))
        return labels

    def _graph(self, atoms, pairs, members) -> AtomGraph:
        n = len(atoms)
        contig_a, contig_b, _ = sub_edges(members, n, pairs[:, 0], pairs[:, 1], np.ones(len(pairs)))
        touch_a, touch_b, touch_len = sub_edges(members, n, atoms.touch[:, 0], atoms.touch[:, 1], atoms.touch_len)
        return AtomGraph(households=atoms.weight[members].astype(float), xy=atoms.xy[members], area=atoms.area[members],
                         perimeter=atoms.perimeter[members], contig_a=contig_a, contig_b=contig_b, touch_a=touch_a,
                         touch_b=touch_b, touch_len=touch_len, band_min=self.band_min, band_max=self.band_max, rng=self.rng)

    def _renumber(self, label: np.ndarray) -> np.ndarray:
        """New groups renumbered densely after the old ids; old ids (< number of old grids) stay, once."""
        label = label.copy()
        for group in np.unique(label):
            if group < len(self.old_codes) and int(group) not in self.used_old:
                self.used_old.add(int(group))
            else:
                label[label == group] = -(self.next_id + 2)
                self.next_id += 1
        return np.where(label < -1, -label - 2, label)

    def _note_component(self, graph, label, households, feasible: bool, total: int, kept) -> None:
        """Report a component drawn out of band: infeasible total, or no in-band cut found."""
        if not feasible:
            self.issues.append({"community_code": self.code, "kind": "infeasible", "message": infeasible_message(
                total, len(np.unique(label)), len(kept) > 0, len(kept) > 0 and not self.options.release_kept,
                self.band_min, self.band_max)})
        _, group = np.unique(label, return_inverse=True)
        still_out = (band_violation(np.bincount(group.ravel(), weights=households), self.band_min, self.band_max) > 0).any()
        if graph.failures and feasible and still_out:
            self.issues.append({"community_code": self.code, "kind": "split_failed",
                                "message": "no in-band contiguous cut found for parts of "
                                           f"{sorted(set(graph.failures))} households"})

    def _drafts_from_labels(self, drafts: list, atoms, labels: np.ndarray) -> None:
        """One draft grid per label (redrawn when it has an old id, else new); unlabelled atoms attach."""
        for group in np.unique(labels[labels >= 0]):
            members = np.flatnonzero(labels == group)
            is_old = group < len(self.old_codes)
            drafts.append({"gid": int(group), "code": self.old_codes[group] if is_old else None,
                           "geoms": list(atoms.geoms[members]), "status": STATUS_REDRAWN if is_old else STATUS_NEW,
                           "households": int(atoms.weight[members].sum())})
        for atom in np.flatnonzero(labels < 0):
            attach_piece(drafts, atoms.geoms[atom], self.code, self.issues, STATUS_NEW)

    def _file_drawn(self, drafts, labels, unit_atom, left, buildings_left, building_atom) -> None:
        """Units (and buildings) of the drawn part take the codes of their atoms' grids."""
        codes = code_of_label(drafts, labels, STATUS_KEPT)
        unit_label = np.where(unit_atom >= 0, labels[np.maximum(unit_atom, 0)], -1)
        self.unit_code[self.unit_index[left]] = codes[unit_label]
        if building_atom is not None and self.city.n_households:
            self.city.building_code[buildings_left] = codes[labels[building_atom]]

    def _grid_rows(self, drafts: list) -> list[dict]:
        """Rows of the grids table (metres) with households counted from the unit codes and moves."""
        city = self.city
        unit_codes = self.unit_code[self.unit_index]
        old = city.household_old[self.unit_index] if city.n_households else city.building_old[self.unit_index]
        rows = []
        for draft in drafts:
            mine = unit_codes == draft["code"]
            moved = int(self.unit_households[mine & pd.notna(old) & (old != draft["code"])].sum())
            households = int(self.unit_households[mine].sum())
            if not city.n_households and draft["status"] != STATUS_KEPT:
                # Units are buildings here: a building above the band is sliced among grids with a
                # share of its count each, which its atoms carry and its single code cannot.
                households = int(draft["households"])
            rows.append({"grid_code": draft["code"], "community_code": self.code,
                         "households": households, "kind": city.kinds[self.code],
                         "band_min": self.band_min, "band_max": self.band_max, "moved": moved,
                         "status": draft["status"], "geometry": draft["geom"]})
        unplaced = int(pd.isna(unit_codes).sum())
        if unplaced:
            self.issues.append({"community_code": self.code, "kind": "unassigned",
                                "message": f"{unplaced} units could not be placed in a grid"})
        return rows


def _touch_both_ways(atoms):
    touch_a, touch_b, touch_len = atoms.touch[:, 0], atoms.touch[:, 1], atoms.touch_len
    return np.r_[touch_a, touch_b], np.r_[touch_b, touch_a], np.r_[touch_len, touch_len]
