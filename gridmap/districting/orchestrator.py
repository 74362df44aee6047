"""``redraw``: the short orchestrator — prepare the inputs, redraw each community, report."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from gridmap.atoms import locate_points
from gridmap.districting.community import CommunityRedraw, Options
from gridmap.districting.geometry import barrier_lines
from gridmap.districting.inputs import (
    City,
    buildings_of_households,
    community_shapes,
    todays_grids,
)
from gridmap.districting.report import RedrawResult, as_series, grids_frame, summarise
from gridmap.metric import metric_crs


def _household_points(households, crs, community_geoms, issues: list):
    """Household points (m) and their community index (-1 outside every community, reported)."""
    n = 0 if households is None else len(households)
    xy = shapely.get_coordinates(households.to_crs(crs).geometry.to_numpy()).reshape(-1, 2) if n else np.zeros((0, 2))
    community = locate_points(xy, community_geoms, nearest=False)
    if n and (community < 0).any():
        issues.append({"community_code": None, "kind": "outside",
                       "message": f"{int((community < 0).sum())} households lie outside every community and were not assigned"})
    return xy, community


def _building_layer(buildings, crs, community_geoms, household_xy, household_community):
    """Footprints (m), representative points, community, households per building and the building
    each household is counted in."""
    n_households = len(household_xy)
    if buildings is None:
        return (None, np.zeros((0, 2)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64),
                np.full(n_households, -1, dtype=np.int64))
    geoms = buildings.to_crs(crs).geometry.to_numpy()
    xy = shapely.get_coordinates(shapely.point_on_surface(geoms)).reshape(-1, 2)
    community = locate_points(xy, community_geoms)
    if n_households:
        of_household = buildings_of_households(household_xy, household_community, geoms, xy, community)
        counts = np.bincount(of_household[of_household >= 0], minlength=len(buildings)).astype(np.int64)
        return geoms, xy, community, counts, of_household
    if "households" not in buildings.columns:
        raise ValueError("buildings need a 'households' column when no households are given")
    counts = buildings["households"].fillna(0).to_numpy().astype(np.int64)
    return geoms, xy, community, counts, np.full(0, -1, dtype=np.int64)


def _prepare_city(communities, households, current, buildings, barriers, kind_column, kind, issues) -> City:
    crs = metric_crs(communities)
    codes, shapes, kinds = community_shapes(communities, crs, kind_column, kind)
    community_geoms = np.array([shapes[c] for c in codes], dtype=object)
    household_xy, household_community = _household_points(households, crs, community_geoms, issues)
    building_geoms, building_xy, building_community, building_households, household_building = _building_layer(
        buildings, crs, community_geoms, household_xy, household_community)
    current_codes, current_geoms, current_home = todays_grids(current, crs, community_geoms)
    code_at = np.array(current_codes + [None], dtype=object)

    def todays_code(xy):
        if not current_codes:
            return np.full(len(xy), None, dtype=object)
        return code_at[locate_points(xy, current_geoms, nearest=False)]

    return City(crs=crs, codes=codes, shapes=shapes, kinds=kinds, household_xy=household_xy,
                household_community=household_community, household_old=todays_code(household_xy),
                household_building=household_building, building_geoms=building_geoms, building_xy=building_xy,
                building_community=building_community, building_households=building_households,
                building_old=todays_code(building_xy), current_codes=current_codes, current_geoms=current_geoms,
                current_home=current_home, barriers=barrier_lines(barriers, crs),
                household_code=np.full(len(household_xy), None, dtype=object),
                building_code=np.full(len(building_xy), None, dtype=object))


def _by_community(community_index: np.ndarray) -> dict:
    """Row positions per community index."""
    order = np.argsort(community_index, kind="stable")
    keys, starts = np.unique(community_index[order], return_index=True)
    return {int(k): part for k, part in zip(keys, np.split(order, starts[1:]))}


# More than ten arguments on purpose: the layers and options of `gridmap redraw`, by keyword.
def redraw(  # noqa: PLR0913
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
        Grids in WGS84; areas, perimeters and Polsby-Popper computed in the local UTM zone (metres).
    """
    if households is None and buildings is None:
        raise ValueError("redraw needs households or buildings with a households count")
    issues: list[dict] = []
    city = _prepare_city(communities, households, current, buildings, barriers, kind_column, kind, issues)
    options = Options(band=band, minimal=minimal_change and len(city.current_codes) > 0, release_kept=release_kept,
                      seed=seed, h3_res=h3_res, h3_res_range=h3_res_range, code_separator=code_separator)
    households_by, buildings_by = _by_community(city.household_community), _by_community(city.building_community)
    empty = np.zeros(0, dtype=np.int64)
    grid_rows = []
    for index in range(len(city.codes)):
        community = CommunityRedraw(city, index, households_by.get(index, empty), buildings_by.get(index, empty),
                                    options, issues)
        grid_rows.extend(community.run())
    grids = grids_frame(grid_rows, city.crs)
    return RedrawResult(
        grids=grids,
        households=as_series(city.household_code, households.index if households is not None else None),
        issues=issues,
        summary=summarise(grids, issues),
        buildings=as_series(city.building_code, buildings.index) if buildings is not None else None,
    )
