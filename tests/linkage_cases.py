"""Built linkage cases shared by the domain, store and API tiers: a small city in metres around
Hangzhou (UTM 51N) turned into WGS84, and the same city stored in PostGIS.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
from shapely.geometry import MultiPolygon, Point, box


# ------------------------------------------------------------------------------------------------
# The GeoDataFrame interface: reasons, shortages, overrides, stability


def _gdf(ids, xy, id_col, **cols):
    """Points given in metres around Hangzhou turned into WGS84 (EPSG:4326)."""
    g = gpd.GeoDataFrame({id_col: ids, **cols}, geometry=[Point(x, y) for x, y in xy], crs="EPSG:32651")
    g = g.to_crs("EPSG:4326")
    return g


def _city(seed=0, grids=4, hh_per=40, members_per=(3, 6)):
    rng = np.random.default_rng(seed)
    x0, y0 = 230_000.0, 3_350_000.0  # UTM 51N, Hangzhou
    hh, mm = [], []
    for g in range(grids):
        ox = x0 + (g % 2) * 600
        oy = y0 + (g // 2) * 600
        for i in range(hh_per):
            hh.append((f"H{g}-{i}", ox + rng.uniform(0, 600), oy + rng.uniform(0, 600), f"G{g}"))
        for i in range(int(rng.integers(*members_per))):
            mm.append((f"M{g}-{i}", ox + rng.uniform(0, 600), oy + rng.uniform(0, 600), f"G{g}"))
    households = _gdf([h[0] for h in hh], [(h[1], h[2]) for h in hh], "household_id", grid_code=[h[3] for h in hh])
    members = _gdf([m[0] for m in mm], [(m[1], m[2]) for m in mm], "member_id", grid_code=[m[3] for m in mm])
    polys = [box(x0 + (g % 2) * 600, y0 + (g // 2) * 600, x0 + (g % 2) * 600 + 600, y0 + (g // 2) * 600 + 600)
             for g in range(grids)]
    grid_gdf = gpd.GeoDataFrame({"grid_code": [f"G{g}" for g in range(grids)]}, geometry=polys,
                                crs="EPSG:32651").to_crs("EPSG:4326")
    return households, members, grid_gdf


# ------------------------------------------------------------------------------------------------
# PostGIS store and HTTP API


def _store_region(engine, seed=8):
    """Street S1 ⊃ community C1 ⊃ grids G0..G3 with households (with made-up names) and members."""
    from shapely.ops import unary_union

    from geodata.store.importer import import_layer

    households, members, grids = _city(seed=seed, grids=4, hh_per=30, members_per=(2, 4))
    households["name"] = [f"住户{i}" for i in range(len(households))]
    households["phone"] = [f"1380000{i:04d}" for i in range(len(households))]
    grids["community_code"] = "C1"
    outline = unary_union(list(grids.geometry))
    street = gpd.GeoDataFrame({"code": ["S1"], "name": ["街道"]}, geometry=[outline], crs="EPSG:4326")
    comm = gpd.GeoDataFrame({"code": ["C1"], "name": ["社区"], "street_code": ["S1"]}, geometry=[outline], crs="EPSG:4326")
    for layer, gdf in (("streets", street), ("communities", comm), ("grids", grids), ("households", households),
                       ("members", members)):
        if layer in ("streets", "communities", "grids"):  # the store holds MultiPolygons
            gdf = gdf.set_geometry([MultiPolygon([g]) if g.geom_type == "Polygon" else g for g in gdf.geometry],
                                   crs="EPSG:4326")
        import_layer(engine, layer, gdf)
    return households, members, grids


def _current_runs(engine):
    import sqlalchemy as sa

    with engine.connect() as c:
        return c.execute(sa.text("SELECT run_id, region FROM link_runs WHERE is_current ORDER BY run_id")).all()
