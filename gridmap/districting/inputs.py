"""Inputs of a redraw brought into the city's metric CRS: communities, households, buildings, today's grids.

All coordinates are metres in the local UTM zone (``gridmap.metric.metric_crs``); inputs are WGS84.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from gridmap.atoms import PRECISION_M, locate_points
from gridmap.districting.geometry import polygonal


@dataclass
class City:
    """Everything a community's redraw reads (metres), and the code arrays it fills in.

    Attributes
    ----------
    crs : pyproj.CRS
        The metric CRS (UTM zone).
    codes : list of str
        Community codes, sorted; ``shapes[code]`` the community polygon, ``kinds[code]`` its kind.
    household_xy, household_community, household_old, household_building : ndarray
        Per household: point (m), community index (-1 outside), today's grid code (or None), and
        the building it is counted in (-1 none).
    building_geoms, building_xy, building_community, building_households, building_old : ndarray
        Per building: footprint (m), representative point (m), community index, households, today's grid code.
    current_codes, current_geoms, current_home : today's grids (code, polygon in m, community index).
    household_code, building_code : ndarray of object
        New grid code per household / building, filled community by community.
    """

    crs: object
    codes: list
    shapes: dict
    kinds: dict
    household_xy: np.ndarray
    household_community: np.ndarray
    household_old: np.ndarray
    household_building: np.ndarray
    building_geoms: np.ndarray | None
    building_xy: np.ndarray
    building_community: np.ndarray
    building_households: np.ndarray
    building_old: np.ndarray
    current_codes: list
    current_geoms: np.ndarray
    current_home: np.ndarray
    barriers: np.ndarray | None
    household_code: np.ndarray
    building_code: np.ndarray

    @property
    def n_households(self) -> int:
        return len(self.household_xy)

    @property
    def has_buildings(self) -> bool:
        return self.building_geoms is not None


def community_shapes(communities: gpd.GeoDataFrame, crs, kind_column: str, default_kind: str):
    """Sorted community codes, their (dissolved, valid, 1 mm-snapped) polygons and kinds."""
    comm = communities.to_crs(crs)
    comm = comm[comm.geometry.notna() & ~comm.geometry.is_empty].copy()
    comm["geometry"] = shapely.make_valid(comm.geometry.to_numpy())
    comm["code"] = comm["code"].astype(str)
    kinds, shapes = {}, {}
    for code, rows in comm.groupby("code", sort=True):
        kinds[code] = _community_kind(rows.iloc[0], kind_column, default_kind)
        shapes[code] = shapely.set_precision(polygonal(shapely.union_all(rows.geometry.to_numpy())), PRECISION_M)
    return sorted(shapes), shapes, kinds


def _community_kind(row, kind_column: str, default_kind: str) -> str:
    value = row.get(kind_column) if kind_column in row else None
    return value.strip().lower() if isinstance(value, str) and value.strip() else default_kind


def buildings_of_households(household_xy, household_community, building_geoms, building_xy, building_community):
    """The building each household is counted in: the footprint containing it, else (outside every
    footprint, or in one filed under another community) the nearest building of its own community."""
    building = locate_points(household_xy, building_geoms, nearest=False)
    bad = np.flatnonzero((building < 0) | (building_community[np.maximum(building, 0)] != household_community))
    for community in np.unique(household_community[bad]):
        rows = bad[household_community[bad] == community]
        candidates = np.flatnonzero(building_community == community) if community >= 0 else np.zeros(0, dtype=np.int64)
        if community >= 0 and len(candidates):
            building[rows] = candidates[cKDTree(building_xy[candidates]).query(household_xy[rows])[1]]
        else:
            building[rows] = -1
    return building


def todays_grids(current: gpd.GeoDataFrame | None, crs, community_geoms: np.ndarray):
    """Today's grids: one polygon per code (metres), filed under the community it overlaps most."""
    if current is None or not len(current):
        return [], np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64)
    grids = current.to_crs(crs)
    grids = grids[grids.geometry.notna() & ~grids.geometry.is_empty].copy()
    grids["geometry"] = shapely.make_valid(grids.geometry.to_numpy())
    grids["grid_code"] = grids["grid_code"].astype(str)
    grids = grids.dissolve("grid_code", as_index=False, sort=True)
    codes = grids["grid_code"].tolist()
    geoms = shapely.set_precision(np.array([polygonal(g) for g in grids.geometry.to_numpy()], dtype=object), PRECISION_M)
    grid_index, community_index = shapely.STRtree(community_geoms).query(geoms, predicate="intersects")
    overlap_m2 = shapely.area(shapely.intersection(geoms[grid_index], community_geoms[community_index]))
    home = np.full(len(codes), -1, dtype=np.int64)
    best = (pd.DataFrame({"grid": grid_index, "community": community_index, "area": overlap_m2})
            .sort_values(["grid", "area", "community"], ascending=[True, False, True]).drop_duplicates("grid"))
    best = best[best["area"] > 0]
    home[best["grid"].to_numpy()] = best["community"].to_numpy()
    return codes, geoms, home
