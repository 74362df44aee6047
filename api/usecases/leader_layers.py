"""Use case: the leaders' extra map layers — incident heat of the page's window, service centres with
their circles, and proposed new sites (选址) — as GeoJSON (WGS84, or GCJ-02 for Amap base maps).

No personal data: heat cells carry counts only; centres are public places; sites are cell centres.
The caller has checked role and region. No FastAPI here.
"""

from __future__ import annotations

from datetime import date

import geopandas as gpd
import numpy as np
import shapely

from gridmap.contract import SERVICE_RADIUS_M, WGS84

#: Proposed new sites shown on the leader map (the best few: each adds the most uncovered households).
PROPOSED_SITES = 3
#: Which service area is drawn: the store holds no road network, so the straight-line circle.
BASIS_STRAIGHT = "straight"
BASIS_LABEL = {"straight": "直线 1,000 米服务圈（未载入道路，非步行范围）", "walking": "步行 1,200 米范围（沿道路）"}


def _collection(gdf: gpd.GeoDataFrame, coords: str, **meta) -> dict:
    """A GeoJSON FeatureCollection of ``gdf`` shifted into ``coords``, with ``meta`` beside the features."""
    from geodata.crs import geodataframe_from_wgs84

    shifted = geodataframe_from_wgs84(gdf, coords)
    props = [c for c in shifted.columns if c != shifted.geometry.name]
    features = [{"type": "Feature", "geometry": shapely.geometry.mapping(g),
                 "properties": {c: _plain(row[c]) for c in props}}
                for g, (_, row) in zip(shifted.geometry, shifted.iterrows(), strict=True)]
    return {"type": "FeatureCollection", "coords": coords, **meta, "features": features}


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return value


def incident_heat(engine, region: str, *, start: date | None, end: date | None, category: str | None,
                  coords: str = "wgs84") -> dict:
    """The incidents of ``region`` reported in the window (China dates, inclusive) and ``category``,
    counted per H3 cell (resolution 9): points at the cell centres with ``n`` and ``open``."""
    from api.usecases.leader import day_window
    from geodata.store.heat import incident_points
    from gridmap.cells import points_to_cells
    from gridmap.heat import HEAT_RES, count_cells

    t0, t1 = day_window(start, end)
    lon, lat, is_open = incident_points(engine, region, t0=t0, t1=t1, category=category)
    counts = count_cells(points_to_cells(lon, lat, HEAT_RES).astype(np.int64), is_open)
    gdf = gpd.GeoDataFrame({"n": counts["n"].astype(int), "open": counts["open"].astype(int)},
                           geometry=gpd.points_from_xy(counts["lon"], counts["lat"]), crs=WGS84)
    window = {"from": start.isoformat() if start else None, "to": end.isoformat() if end else None,
              "category": category}
    return _collection(gdf, coords, region=region, window=window, res=HEAT_RES, incidents=int(counts["n"].sum()))


def service_centres(engine, region: str, coords: str = "wgs84") -> dict:
    """Service centres serving ``region`` (inside it or near enough to serve it), each as its point
    (``shape``="centre") and its service area polygon (``shape``="area"): the straight-line circle of
    ``radius_m`` metres buffered in a metric projection (not a degree radius)."""
    from geodata.store.maps import load_region
    from gridmap.coverage import straight_line_areas

    layers = load_region(engine, region, ("grids", "service_centres"))
    centres = layers.get("service_centres")
    if centres is None or len(centres) == 0:
        return _collection(_empty(), coords, region=region, basis=BASIS_STRAIGHT, basis_label=BASIS_LABEL["straight"])
    areas = straight_line_areas(centres, SERVICE_RADIUS_M)
    names = centres["name"] if "name" in centres.columns else centres["centre_id"]
    points = gpd.GeoDataFrame({"centre_id": centres["centre_id"].astype(str).to_numpy(), "name": names.to_numpy(),
                               "radius_m": areas["radius_m"].to_numpy(), "shape": "centre"},
                              geometry=centres.geometry.to_numpy(), crs=WGS84)
    circles = points.assign(shape="area").set_geometry(areas.geometry.to_numpy())
    both = gpd.GeoDataFrame(pd_concat([circles, points]), crs=WGS84)
    return _collection(both, coords, region=region, basis=BASIS_STRAIGHT, basis_label=BASIS_LABEL["straight"])


def proposed_sites(engine, region: str, k: int = PROPOSED_SITES, coords: str = "wgs84") -> dict:
    """Up to ``k`` proposed new sites for ``region``: a maximal-covering choice
    (:func:`gridmap.siting.choose_sites`) among the centres of the H3 cells holding households, of
    the households outside every straight-line circle of ``SERVICE_RADIUS_M`` metres. Each site as
    its point (``rank``, ``newly_covered`` households) and its circle; sites adding nobody are left out.
    """
    from geodata.store.coverage import load_coverage_inputs
    from gridmap.coverage import straight_line_areas, straight_line_coverage
    from gridmap.siting import choose_sites
    from gridmap.sites import household_cell_candidates

    layers = load_coverage_inputs(engine, region)
    hh = layers["households"]
    meta = {"region": region, "basis": BASIS_STRAIGHT, "basis_label": BASIS_LABEL["straight"], "uncovered": 0}
    if len(hh) == 0:
        return _collection(_empty(), coords, **meta)
    centres = layers.get("service_centres")
    covered = (straight_line_coverage(hh, centres, SERVICE_RADIUS_M)["covered"].to_numpy()
               if centres is not None and len(centres) else None)
    meta["uncovered"] = int(len(hh) - (covered.sum() if covered is not None else 0))
    if meta["uncovered"] == 0:
        return _collection(_empty(), coords, **meta)
    sites, result = choose_sites(household_cell_candidates(hh), hh, k, covered=covered)
    sites = sites[sites["newly_covered"] > 0]
    meta.update(method=result.method, optimal=bool(result.optimal))
    points = gpd.GeoDataFrame({"site_id": sites["site_id"].to_numpy(), "rank": sites["rank"].to_numpy(),
                               "newly_covered": sites["newly_covered"].to_numpy(), "radius_m": SERVICE_RADIUS_M,
                               "shape": "site"}, geometry=sites.geometry.to_numpy(), crs=WGS84)
    circles = straight_line_areas(points.assign(centre_id=points["site_id"]), SERVICE_RADIUS_M)
    areas = points.assign(shape="area").set_geometry(circles.geometry.to_numpy())
    return _collection(gpd.GeoDataFrame(pd_concat([areas, points]), crs=WGS84), coords, **meta)


def _empty() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"shape": []}, geometry=gpd.GeoSeries([], crs=WGS84), crs=WGS84)


def pd_concat(frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)
