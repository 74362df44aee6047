"""PostGIS → GeoParquet partitioned by street (``gridmap export --parquet OUT --from-db``).

Reads the planning inputs from the store without any personal data (no names, phone numbers or ID
numbers are selected, so nothing here needs masking or auditing) and writes them with
:func:`geodata.parquet.export_parquet`. Rows are read in id order so two exports are identical.
"""

from __future__ import annotations

import geopandas as gpd
from sqlalchemy.engine import Engine

#: Layer → SELECT of its planning columns (WGS84 ``geom``; no personal data).
STORE_QUERIES = {
    "streets": "SELECT code, name, geom FROM streets ORDER BY code",
    "communities": "SELECT code, name, street_code, geom FROM communities ORDER BY code",
    "grids": "SELECT grid_code, name, community_code, kind, has_branch, branch_name, geom FROM grids ORDER BY grid_code",
    "households": "SELECT household_id, grid_code, size, tags, geom FROM households ORDER BY household_id",
    "members": "SELECT member_id, grid_code, kind, skills, available, min_links, max_links, geom FROM members "
               "ORDER BY member_id",
    "service_centres": "SELECT centre_id, name, kind, radius_m, geom FROM service_centres ORDER BY centre_id",
}


def read_store_layers(engine: Engine) -> dict[str, gpd.GeoDataFrame]:
    """Every planning layer of the store as WGS84 GeoDataFrames (empty layers left out)."""
    layers = {}
    with engine.connect() as conn:
        for name, sql in STORE_QUERIES.items():
            gdf = gpd.read_postgis(sql, conn, geom_col="geom").rename_geometry("geometry")
            if len(gdf):
                layers[name] = gdf.set_crs("EPSG:4326", allow_override=True)
    for name in ("households", "members"):  # arrays of text become the contract's comma-separated text
        column = "tags" if name == "households" else "skills"
        if name in layers and column in layers[name].columns:
            layers[name][column] = [", ".join(v) if isinstance(v, list) else v for v in layers[name][column]]
    return layers


def export_store(engine: Engine, out, radius_m: float | None = None) -> dict:
    """Write the store's planning layers as GeoParquet partitioned by street; returns the metadata."""
    from geodata.parquet import export_parquet

    return export_parquet(read_store_layers(engine), out, radius_m=radius_m)
