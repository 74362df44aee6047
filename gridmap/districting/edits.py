"""What-if edits for planners: move H3 cells or areas into a grid and see what would change.

Areas in m² and geometry overlays in the grids' local UTM zone (metres); input and output WGS84.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gridmap.atoms import PRECISION_M, locate_points
from gridmap.compactness import polsby_popper
from gridmap.contract import WGS84, grid_band
from gridmap.metric import metric_crs

EDIT_COLUMNS = ["grid_code", "community_code", "households_before", "households", "band_min", "band_max", "in_band",
                "contiguous", "polsby_popper", "removed", "geometry"]


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


def _metric_grids(grids: gpd.GeoDataFrame, crs):
    """Grids in ``crs`` (one row per code) and their valid, 1 mm-snapped polygons (metres)."""
    metric = grids.assign(grid_code=grids["grid_code"].astype(str)).to_crs(crs)
    if not metric["grid_code"].is_unique:
        metric = metric.dissolve("grid_code", as_index=False, sort=True)
    else:
        metric = metric.reset_index(drop=True)
    return metric, shapely.set_precision(shapely.make_valid(metric.geometry.to_numpy()), PRECISION_M)


def _selection(cells, areas, crs):
    """The union (metres) of the H3 cells and areas to move."""
    from gridmap.cells import cell_polygon

    shapes = [cell_polygon(c) for c in (cells or [])] + [g for g in (areas or []) if g is not None and not g.is_empty]
    if not shapes:
        raise ValueError("nothing to move: give H3 cells or areas")
    metric = gpd.GeoSeries(shapes, crs=WGS84).to_crs(crs).to_numpy()
    return shapely.set_precision(shapely.union_all(shapely.make_valid(metric)), PRECISION_M)


def _ground_moved(selection, geoms, same_community, target: int, community, issues: list):
    """Ground that changes grid (inside the target's community, outside the target), the grids it
    comes from and their polygons after the edit (metres)."""
    region = shapely.union_all(geoms[same_community], grid_size=PRECISION_M)
    taken = shapely.difference(shapely.intersection(selection, region, grid_size=PRECISION_M), geoms[target],
                               grid_size=PRECISION_M)
    outside = shapely.difference(selection, region, grid_size=PRECISION_M)
    if shapely.area(outside) >= 1.0:
        issues.append(f"{shapely.area(outside):.0f} m² of the selection lie outside community {community} and are not moved")
    sources = [int(i) for i in np.flatnonzero(same_community)
               if i != target and shapely.area(shapely.intersection(geoms[i], taken)) > 0]
    after = {i: shapely.difference(geoms[i], taken, grid_size=PRECISION_M) for i in sources}
    after[target] = shapely.union(geoms[target], taken, grid_size=PRECISION_M)
    return taken, sources, after


def _households_moving(households, crs, metric, geoms, taken, source_codes, to_grid: str):
    """Today's grid code per household, and the households standing on the moved ground."""
    points = households.to_crs(crs)
    xy = shapely.get_coordinates(points.geometry.to_numpy()).reshape(-1, 2)
    if "grid_code" in points.columns and points["grid_code"].notna().all():
        today = points["grid_code"].astype(str).to_numpy()
    else:
        where = locate_points(xy, geoms, nearest=False)
        today = np.where(where >= 0, metric["grid_code"].to_numpy()[np.maximum(where, 0)], None)
    on_taken = shapely.intersects_xy(taken, xy[:, 0], xy[:, 1]) if len(xy) else np.zeros(0, dtype=bool)
    moving = on_taken & np.isin(today.astype(object), list(source_codes))
    moved = pd.DataFrame({"household_id": points["household_id"].to_numpy()[moving], "from_grid": today[moving],
                          "to_grid": to_grid})
    return today, moved


def _touched_row(metric, i: int, target: int, community, today, moved, geom, band) -> dict:
    code = metric["grid_code"].iloc[i]
    kind = metric["kind"].iloc[i] if "kind" in metric.columns else None
    band_min, band_max = band if band is not None else grid_band(kind if isinstance(kind, str) else None)
    before = int(np.sum(today == code))
    delta = len(moved) if i == target else -int(np.sum(moved["from_grid"].to_numpy() == code))
    return {"grid_code": code, "community_code": community, "households_before": before, "households": before + delta,
            "band_min": band_min, "band_max": band_max, "contiguous": geom.geom_type == "Polygon" and not geom.is_empty,
            "removed": bool(geom.is_empty or shapely.area(geom) == 0), "geometry": geom}


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
        Areas measured in the local UTM zone (m²); geometries returned in WGS84.
    """
    if to_grid not in set(grids["grid_code"].astype(str)):
        raise ValueError(f"grid {to_grid!r} does not exist")
    crs = metric_crs(grids)
    selection = _selection(cells, areas, crs)
    metric, geoms = _metric_grids(grids, crs)
    target = int(np.flatnonzero(metric["grid_code"].to_numpy() == to_grid)[0])
    community = (metric["community_code"].astype(object).to_numpy() if "community_code" in metric.columns
                 else np.full(len(metric), None, dtype=object))
    same_community = np.array([(community[i] == community[target]) or (community[target] is None) for i in range(len(metric))])
    issues: list[str] = []
    taken, sources, after = _ground_moved(selection, geoms, same_community, target, community[target], issues)
    today, moved = _households_moving(households, crs, metric, geoms, taken,
                                      {metric["grid_code"].iloc[i] for i in sources}, to_grid)
    rows = [_touched_row(metric, i, target, community[i], today, moved, after[i], band) for i in [target] + sources]
    out = gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)
    out["in_band"] = (out["households"] >= out["band_min"]) & (out["households"] <= out["band_max"])
    out["polsby_popper"] = polsby_popper(out.geometry.to_numpy())
    for row in out.itertuples():
        if row.removed and row.households > 0:
            issues.append(f"grid {row.grid_code} would have no ground left but {row.households} households")
    return EditResult(grids=out[EDIT_COLUMNS].to_crs(WGS84), moved=moved, issues=issues)
