"""What-if edits for planners: move H3 cells or areas into a grid and see what would change.

Locked grids (kept exactly as they are) never gain or lose ground or households: an edit into one, or
one selecting a cell or area whose centre lies in one, is refused (:class:`LockedGrids`); the edges of
other selected cells that overlap a locked grid are left where they are. Households sharing a 楼栋
(``building`` column) that an edit would split between grids are listed, and ``whole_buildings`` takes
each such building whole (:mod:`gridmap.districting.address_buildings`).

Areas in m² and geometry overlays in the grids' local UTM zone (metres); input and output WGS84.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gridmap.atoms import PRECISION_M, locate_points
from gridmap.compactness import polsby_popper
from gridmap.contract import WGS84, grid_band
from gridmap.districting.address_buildings import (
    SPLIT_COLUMNS,
    building_hulls,
    building_ids,
    left_behind,
    split_buildings,
)
from gridmap.metric import metric_crs

EDIT_COLUMNS = ["grid_code", "community_code", "households_before", "households", "band_min", "band_max", "in_band",
                "contiguous", "polsby_popper", "removed", "geometry"]
#: Rounds of taking split buildings whole (a building's ground may reach households of another one).
WHOLE_BUILDING_ROUNDS = 4


class LockedGrids(ValueError):
    """The edit would change locked grids (锁定网格).

    Attributes
    ----------
    codes : list of str
        The locked grids concerned.
    into : bool
        True when the receiving grid is locked; False when selected cells or areas lie in locked grids.
    shapes : dict
        ``{grid_code: number of selected cells/areas whose centre lies in it}`` (empty when ``into``).
    """

    def __init__(self, codes, *, into: bool, shapes: dict | None = None):
        self.codes, self.into, self.shapes = sorted(codes), into, dict(shapes or {})
        what = "receives ground" if into else "would lose selected cells/areas"
        super().__init__(f"locked grid(s) {', '.join(self.codes)} {what}; locked grids are kept exactly as they are")


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
    split_buildings : DataFrame
        Buildings (楼栋) whose households would end in more than one grid: ``building``, ``households``,
        ``moving``, ``to_grid``, ``staying`` (``{grid_code: households}``). Empty with ``whole_buildings``
        unless a building also stands in a locked grid or another community.
    outside_m2 : float
        Selected ground outside the target's community (m², not moved).
    locked_kept_m2 : float
        Selected ground inside locked grids (m², edges of cells centred elsewhere; not moved).
    buildings_added : list of str
        Buildings taken whole on top of the selection (``whole_buildings``).
    """

    grids: gpd.GeoDataFrame
    moved: pd.DataFrame
    issues: list
    split_buildings: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SPLIT_COLUMNS))
    outside_m2: float = 0.0
    locked_kept_m2: float = 0.0
    buildings_added: list = field(default_factory=list)


def _metric_grids(grids: gpd.GeoDataFrame, crs):
    """Grids in ``crs`` (one row per code) and their valid, 1 mm-snapped polygons (metres)."""
    metric = grids.assign(grid_code=grids["grid_code"].astype(str)).to_crs(crs)
    if not metric["grid_code"].is_unique:
        metric = metric.dissolve("grid_code", as_index=False, sort=True)
    else:
        metric = metric.reset_index(drop=True)
    return metric, shapely.set_precision(shapely.make_valid(metric.geometry.to_numpy()), PRECISION_M)


def _shapes(cells, areas) -> list:
    from gridmap.cells import cell_polygon

    return [cell_polygon(c) for c in (cells or [])] + [g for g in (areas or []) if g is not None and not g.is_empty]


def _centres(cells, areas) -> list:
    """WGS84 centre of each cell (its H3 centre) and each area (a point inside it)."""
    import h3

    points = [shapely.Point(lon, lat) for lat, lon in
              (h3.cell_to_latlng(c if isinstance(c, str) else h3.int_to_str(int(c))) for c in (cells or []))]
    return points + [g.representative_point() for g in (areas or []) if g is not None and not g.is_empty]


def shape_grids(grids: gpd.GeoDataFrame, cells=None, areas=None) -> np.ndarray:
    """Code of the grid holding the centre of each cell, then each area (the nearest grid when none does).

    This is what a cell "belongs to" on the editor's map and for the lock rule. Located in the grids'
    local UTM zone (metres).
    """
    centres = _centres(cells, areas)
    if not centres:
        return np.array([], dtype=object)
    crs = metric_crs(grids)
    metric, geoms = _metric_grids(grids, crs)
    xy = shapely.get_coordinates(gpd.GeoSeries(centres, crs=WGS84).to_crs(crs).to_numpy())
    return metric["grid_code"].to_numpy()[locate_points(xy, geoms, nearest=True)]


def _refuse_locked(grids, cells, areas, to_grid: str, locked: set) -> None:
    if to_grid in locked:
        raise LockedGrids([to_grid], into=True)
    hits = pd.Series(shape_grids(grids, cells, areas), dtype=object)
    hits = hits[hits.isin(locked)].value_counts()
    if len(hits):
        raise LockedGrids(list(hits.index), into=False, shapes={str(k): int(v) for k, v in hits.items()})


def _selection(shapes, crs):
    """The union (metres) of the cells and areas to move."""
    if not shapes:
        raise ValueError("nothing to move: give H3 cells or areas")
    metric = gpd.GeoSeries(shapes, crs=WGS84).to_crs(crs).to_numpy()
    return shapely.set_precision(shapely.union_all(shapely.make_valid(metric)), PRECISION_M)


def _without(selection, geoms, mask):
    """The selection minus the ground of ``geoms[mask]`` (metres), and the area taken off (m²)."""
    if not mask.any():
        return selection, 0.0
    hole = shapely.union_all(geoms[mask], grid_size=PRECISION_M)
    kept = shapely.difference(selection, hole, grid_size=PRECISION_M)
    return kept, float(shapely.area(selection) - shapely.area(kept))


def _ground_moved(selection, geoms, same_community, target: int):
    """Ground that changes grid (inside the target's community, outside the target), the grids it
    comes from, their polygons after the edit (metres) and the selected area outside the community (m²)."""
    region = shapely.union_all(geoms[same_community], grid_size=PRECISION_M)
    taken = shapely.difference(shapely.intersection(selection, region, grid_size=PRECISION_M), geoms[target],
                               grid_size=PRECISION_M)
    outside = float(shapely.area(shapely.difference(selection, region, grid_size=PRECISION_M)))
    sources = [int(i) for i in np.flatnonzero(same_community)
               if i != target and shapely.area(shapely.intersection(geoms[i], taken)) > 0]
    after = {i: shapely.difference(geoms[i], taken, grid_size=PRECISION_M) for i in sources}
    after[target] = shapely.union(geoms[target], taken, grid_size=PRECISION_M)
    return taken, sources, after, outside


@dataclass
class _Homes:
    """Households in metres: ids, positions, today's grid, 楼栋 labels and building numbers."""

    ids: np.ndarray
    xy: np.ndarray
    today: np.ndarray
    labels: np.ndarray
    buildings: np.ndarray


def _homes(households: gpd.GeoDataFrame, crs, metric, geoms) -> _Homes:
    points = households.to_crs(crs)
    xy = shapely.get_coordinates(points.geometry.to_numpy()).reshape(-1, 2)
    if "grid_code" in points.columns and points["grid_code"].notna().all():
        today = points["grid_code"].astype(str).to_numpy()
    else:
        where = locate_points(xy, geoms, nearest=False)
        today = np.where(where >= 0, metric["grid_code"].to_numpy()[np.maximum(where, 0)], None)
    labels = (points["building"].to_numpy(dtype=object) if "building" in points.columns
              else np.full(len(points), None, dtype=object))
    return _Homes(points["household_id"].to_numpy(), xy, today.astype(object), labels, building_ids(labels, xy))


def _moving(homes: _Homes, taken, source_codes) -> np.ndarray:
    """Households standing on the moved ground whose grid today is one that loses ground."""
    if not len(homes.xy):
        return np.zeros(0, dtype=bool)
    return shapely.intersects_xy(taken, homes.xy[:, 0], homes.xy[:, 1]) & np.isin(homes.today, list(source_codes))


def _touched_row(metric, i: int, target: int, community, today, moved, geom, band) -> dict:
    code = metric["grid_code"].iloc[i]
    kind = metric["kind"].iloc[i] if "kind" in metric.columns else None
    band_min, band_max = band if band is not None else grid_band(kind if isinstance(kind, str) else None)
    before = int(np.sum(today == code))
    delta = len(moved) if i == target else -int(np.sum(moved["from_grid"].to_numpy() == code))
    return {"grid_code": code, "community_code": community, "households_before": before, "households": before + delta,
            "band_min": band_min, "band_max": band_max, "contiguous": geom.geom_type == "Polygon" and not geom.is_empty,
            "removed": bool(geom.is_empty or shapely.area(geom) == 0), "geometry": geom}


@dataclass
class _Move:
    """One round of an edit: ground taken, source grids, polygons after, who moves, split buildings."""

    taken: object
    sources: list
    after: dict
    outside_m2: float
    moving: np.ndarray
    splits: pd.DataFrame


def _move(selection, geoms, movable, target: int, homes: _Homes, codes, to_grid: str) -> _Move:
    taken, sources, after, outside = _ground_moved(selection, geoms, movable, target)
    moving = _moving(homes, taken, {codes[i] for i in sources})
    splits = split_buildings(homes.labels, homes.buildings, moving, homes.today, to_grid)
    return _Move(taken, sources, after, outside, moving, splits)


def _whole_buildings(selection, move: _Move, homes: _Homes, geoms, locked_mask):
    """The selection widened by the ground of the households each split building would leave behind
    (and of those moving, so the ground is one piece); locked ground excluded."""
    behind = left_behind(homes.buildings, move.moving, homes.today)
    hulls = building_hulls(homes.buildings, homes.xy, np.unique(homes.buildings[behind]), behind | move.moving)
    wider = shapely.union_all([selection, *hulls], grid_size=PRECISION_M)
    return _without(wider, geoms, locked_mask)[0]


def preview_edit(
    grids: gpd.GeoDataFrame,
    households: gpd.GeoDataFrame,
    to_grid: str,
    *,
    cells=None,
    areas=None,
    band: tuple[int, int] | None = None,
    locked=(),
    whole_buildings: bool = False,
) -> EditResult:
    """Move H3 cells and/or areas (e.g. building footprints) into grid ``to_grid``: what would change.

    Parameters
    ----------
    grids : GeoDataFrame (WGS84)
        Grids of (at least) the target's community: ``grid_code``, optional ``community_code``,
        ``kind``. Grids never cross a community boundary, so only ground of grids in the target's
        community moves; the rest of the selection is reported and ignored.
    households : GeoDataFrame (WGS84)
        Household points with ``household_id``, ``grid_code`` (located in ``grids`` if missing) and
        optional ``building`` (楼栋, to find buildings the edit would split).
    to_grid : str
        Code of the receiving grid.
    cells : iterable of H3 indexes (int or str, any resolution), optional
    areas : iterable of shapely geometries (WGS84), optional
    band : (int, int), optional
        Household band; by default from each grid's ``kind`` (urban 300–500, rural 100–200).
    locked : iterable of str
        Grids kept exactly as they are. Raises :class:`LockedGrids` when ``to_grid`` is one, or when a
        selected cell's or area's centre lies in one (:func:`shape_grids`); other selected ground
        overlapping a locked grid stays where it is.
    whole_buildings : bool
        Take every building (楼栋) the selection would split whole, so none is split between grids.

    Returns
    -------
    EditResult
        Areas measured in the local UTM zone (m²); geometries returned in WGS84.
    """
    codes_in = set(grids["grid_code"].astype(str))
    if to_grid not in codes_in:
        raise ValueError(f"grid {to_grid!r} does not exist")
    locked_set = {str(c) for c in locked} & codes_in
    _refuse_locked(grids, cells, areas, to_grid, locked_set)
    crs = metric_crs(grids)
    metric, geoms = _metric_grids(grids, crs)
    codes = metric["grid_code"].to_numpy()
    locked_mask = np.isin(codes, list(locked_set))
    selection, locked_m2 = _without(_selection(_shapes(cells, areas), crs), geoms, locked_mask)
    target = int(np.flatnonzero(codes == to_grid)[0])
    community = (metric["community_code"].astype(object).to_numpy() if "community_code" in metric.columns
                 else np.full(len(metric), None, dtype=object))
    same_community = np.array([(community[i] == community[target]) or (community[target] is None) for i in range(len(metric))])
    homes = _homes(households, crs, metric, geoms)
    movable = same_community & ~locked_mask  # a locked grid is never a source, even of a sliver
    seen: set[str] = set()
    for _ in range(WHOLE_BUILDING_ROUNDS + 1):
        move = _move(selection, geoms, movable, target, homes, codes, to_grid)
        seen |= set(move.splits["building"])
        if not whole_buildings or move.splits.empty:
            break
        selection = _whole_buildings(selection, move, homes, geoms, locked_mask)
    added = sorted(seen - set(move.splits["building"])) if whole_buildings else []
    return _result(metric, target, community, homes, move, added, band, to_grid, locked_m2)


def _result(metric, target: int, community, homes: _Homes, move: _Move, added: list, band, to_grid: str,
            locked_m2: float) -> EditResult:
    moved = pd.DataFrame({"household_id": homes.ids[move.moving], "from_grid": homes.today[move.moving],
                          "to_grid": to_grid})
    rows = [_touched_row(metric, i, target, community[i], homes.today, moved, move.after[i], band)
            for i in [target] + move.sources]
    out = gpd.GeoDataFrame(rows, geometry="geometry", crs=metric.crs)
    out["in_band"] = (out["households"] >= out["band_min"]) & (out["households"] <= out["band_max"])
    out["polsby_popper"] = polsby_popper(out.geometry.to_numpy())
    issues: list[str] = []
    if move.outside_m2 >= 1.0:
        issues.append(f"{move.outside_m2:.0f} m² of the selection lie outside community {community[target]} "
                      "and are not moved")
    if locked_m2 >= 1.0:
        issues.append(f"{locked_m2:.0f} m² of the selection lie in locked grids and are not moved")
    for row in out.itertuples():
        if row.removed and row.households > 0:
            issues.append(f"grid {row.grid_code} would have no ground left but {row.households} households")
    for split in move.splits.to_dict("records"):
        issues.append(f"building {split['building']} would be split: {split['moving']} households into {to_grid}, "
                      + ", ".join(f"{n} stay in {code}" for code, n in split["staying"].items()))
    return EditResult(grids=out[EDIT_COLUMNS].to_crs(WGS84), moved=moved, issues=issues, split_buildings=move.splits,
                      outside_m2=move.outside_m2, locked_kept_m2=locked_m2, buildings_added=added)
