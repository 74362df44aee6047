"""The bundled sample scenario, built from the OpenStreetMap extract around the Bund (Shanghai).

© OpenStreetMap contributors, ODbL 1.0 (https://www.openstreetmap.org/copyright). The derived files
in ``geodata/sample_data/shanghai_bund`` carry the same licence and attribution.

Households are estimated from residential buildings (buildings intersecting ``landuse=residential``):
footprint area × floors / 90 m² per household, floors = height / 3 m (3 floors when no height is
mapped: the area's residential stock is mostly 2–4 storey 里弄 lanes). Households are placed at
random inside their building. Party members are ~7 % of households, at home, with skill tags.
Service centres sit in the three largest residential areas.

The area has no published community boundaries, so three stand-in communities (社区) are drawn as the
Voronoi regions of the service centres, clipped to the built-up area; grids are then drawn inside them
to the urban standard (300–500 households) by ``gridmap.districting``. One grid is left without a
party branch so the maps show what a 空白网格 looks like.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from gridmap.metric import metric_crs
from geodata.synth import _members_from, _people, _sample_in_polygons

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data" / "shanghai_bund"
ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0 (https://www.openstreetmap.org/copyright)"
M2_PER_HOUSEHOLD = 90.0
FLOOR_HEIGHT_M = 3.0
DEFAULT_FLOORS = 3


def build_bund_sample(src: Path, out: Path = SAMPLE_DIR, seed: int = 7, member_rate: float = 0.07) -> dict[str, int]:
    """Build the sample scenario from the OSM extract folder ``src`` into ``out``; returns layer sizes."""
    import pyogrio

    rng = np.random.default_rng(seed)
    src = Path(src)
    buildings = pyogrio.read_dataframe(src / "buildings.geojson").to_crs("EPSG:4326")
    landuse = pyogrio.read_dataframe(src / "landuse.geojson").to_crs("EPSG:4326")
    residential = landuse[landuse["kind"] == "residential"]
    hit = buildings.sindex.query(residential.geometry.values, predicate="intersects")[1]
    res_b = buildings.iloc[np.unique(hit)].reset_index(drop=True)
    res_b = res_b[res_b["kind"] == "building"].reset_index(drop=True)
    crs = metric_crs(res_b)
    bm = res_b.to_crs(crs)
    height = res_b["height"].astype(float)
    floors = np.where(height.notna() & (height > 0), np.maximum(1, np.round(height / FLOOR_HEIGHT_M)), DEFAULT_FLOORS)
    counts = np.floor(bm.area.to_numpy() * floors / M2_PER_HOUSEHOLD).astype(int)
    xy = _sample_in_polygons(rng, bm.geometry.values, counts)
    households = _people(rng, xy, crs, np.array([None] * len(xy), dtype=object), region="310101")
    households = households.drop(columns=["grid_code"])
    households["grid_code"] = None
    members = _members_from(rng, households.assign(grid_code=""), member_rate)
    members["grid_code"] = None
    big = residential.to_crs(crs).assign(a=lambda d: d.area).sort_values("a", ascending=False).head(3)
    pts = big.geometry.representative_point().to_crs("EPSG:4326")
    centres = gpd.GeoDataFrame({"centre_id": ["SH-C1", "SH-C2", "SH-C3"],
                                "name": ["外滩党群服务中心", "南京东路党群服务中心", "陆家嘴党群服务中心"],
                                "kind": "street", "radius_m": 1000.0}, geometry=pts.values, crs="EPSG:4326")
    communities = _stand_in_communities(centres, buildings, crs)
    from gridmap.districting import redraw

    drawn = redraw(communities, households, minimal_change=False, seed=seed).grids
    grids = drawn[["grid_code", "community_code", "geometry"]].copy()
    grids["name"] = [f"外滩第{i + 1}网格" for i in range(len(grids))]
    grids["kind"] = "urban"
    grids["has_branch"] = True
    grids.loc[grids.index[-1], "has_branch"] = False
    roads = pyogrio.read_dataframe(src / "roads.geojson").to_crs("EPSG:4326")
    roads = roads[["id", "kind", "kind_detail", "name", "geometry"]]
    b_out = res_b[["id", "height", "geometry"]].assign(households=counts)
    out.mkdir(parents=True, exist_ok=True)
    for name, gdf in (("households", households), ("members", members), ("service_centres", centres),
                      ("communities", communities), ("grids", grids),
                      ("roads", roads), ("buildings", b_out)):
        p = out / f"{name}.geojson"
        if p.exists():
            p.unlink()
        pyogrio.write_dataframe(gdf, p, driver="GeoJSON", COORDINATE_PRECISION=7)
    (out / "ATTRIBUTION.md").write_text(
        "# Sample scenario: the Bund and Lujiazui, Shanghai\n\n"
        f"Derived from OpenStreetMap data. {ATTRIBUTION}.\n\n"
        "Buildings and roads are OpenStreetMap features; households, members and service centres are synthetic\n"
        "(communities are stand-ins: Voronoi regions of the service centres; grids drawn by gridmap's redraw)\n"
        "(estimated from residential building footprints × floors / 90 m²; names, phones and ID numbers are made up).\n"
        "This derived database is available under the Open Database License (ODbL) 1.0.\n", encoding="utf-8")
    return {"households": len(households), "members": len(members), "service_centres": len(centres),
            "communities": len(communities), "grids": len(grids),
            "roads": len(roads), "buildings": len(b_out)}


def _stand_in_communities(centres: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame, crs: str) -> gpd.GeoDataFrame:
    """Voronoi regions of the service centres, clipped to the built-up area (buildings' hull + 150 m)."""
    area = shapely.convex_hull(shapely.union_all(buildings.to_crs(crs).geometry.values)).buffer(150.0)
    pts = shapely.MultiPoint(list(centres.to_crs(crs).geometry.values))
    cells = shapely.voronoi_polygons(pts, extend_to=area)
    polys = [c.intersection(area) for c in cells.geoms]
    # order by the centre each region contains, so codes follow the centres
    order = [next(i for i, c in enumerate(polys) if c.contains(p)) for p in centres.to_crs(crs).geometry.values]
    polys = [polys[i] for i in order]
    codes = [f"310101{n:03d}{1:03d}" for n in range(1, len(polys) + 1)]
    names = ["外滩社区", "南京东路社区", "陆家嘴社区"][: len(polys)]
    return gpd.GeoDataFrame({"code": codes, "name": names, "street_code": "310101001", "kind": "urban"},
                            geometry=polys, crs=crs).to_crs("EPSG:4326")
