"""PostGIS → GeoParquet partitioned by street (``gridmap export --parquet OUT --from-db``).

Reads the planning inputs from the store without any personal data (no names, phone numbers or ID
numbers are selected, so nothing here needs masking or auditing) and writes them with
:func:`geodata.parquet.export_parquet`. Rows are read in id order so two exports are identical.

At province or national size the export runs street by street (:func:`export_store_street`, one
task per street on a cluster): ``households`` and ``members`` are partitioned by ``street_code``
(migration 0014), so each street's query reads its own partitions only and no process holds more
than one street. The service centres (few) are placed by the driver (:func:`export_store_centres`).
"""

from __future__ import annotations

import time
from pathlib import Path

import geopandas as gpd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geodata.errors import InputError
from geodata.parquet import widen_bounds, write_partition, write_street

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
#: The street of a grid, as the store partitions households and members (grid → community → street).
GRID_STREET_JOIN = "FROM grids g JOIN communities c ON c.code = g.community_code"
#: Layer → SELECT of one street's rows (``:street``); the ``street_code`` filter prunes to its partition.
STREET_QUERIES = {
    "communities": "SELECT code, name, street_code, geom FROM communities WHERE street_code = :street ORDER BY code",
    "grids": "SELECT g.grid_code, g.name, g.community_code, g.kind, g.has_branch, g.branch_name, g.geom "
             f"{GRID_STREET_JOIN} WHERE c.street_code = :street ORDER BY g.grid_code",
    "households": "SELECT household_id, grid_code, size, tags, geom FROM households WHERE street_code = :street "
                  "ORDER BY household_id",
    "members": "SELECT member_id, grid_code, kind, skills, available, min_links, max_links, geom FROM members "
               "WHERE street_code = :street ORDER BY member_id",
}
#: Every centre with the street of the grid holding it, else of the nearest grid (the file export's rule).
CENTRE_STREETS = (
    "SELECT sc.centre_id, sc.name, sc.kind, sc.radius_m, sc.geom, n.street_code AS street FROM service_centres sc "
    "CROSS JOIN LATERAL (SELECT c.street_code " + GRID_STREET_JOIN + " WHERE c.street_code IS NOT NULL "
    "ORDER BY NOT ST_Intersects(g.geom, sc.geom), g.geom <-> sc.geom, g.grid_code LIMIT 1) n ORDER BY sc.centre_id")
#: Rows the per-street export cannot place (no street through grid → community).
ORPHANS = {
    "grids": "SELECT count(*) FROM grids g LEFT JOIN communities c ON c.code = g.community_code "
             "WHERE c.street_code IS NULL",
    "households": "SELECT count(*) FROM households WHERE street_code IS NULL",
    "members": "SELECT count(*) FROM members WHERE street_code IS NULL",
}


def _read(conn, sql: str, **params) -> gpd.GeoDataFrame:
    """One query as a WGS84 GeoDataFrame with the geometry column named ``geometry``."""
    gdf = gpd.read_postgis(sa.text(sql), conn, geom_col="geom", params=params or None).rename_geometry("geometry")
    return gdf.set_crs("EPSG:4326", allow_override=True)


def _join_arrays(layers: dict) -> None:
    """Arrays of text (``tags``, ``skills``) become the contract's comma-separated text, in place."""
    for name, column in (("households", "tags"), ("members", "skills")):
        if name in layers and column in layers[name].columns:
            layers[name][column] = [", ".join(v) if isinstance(v, list) else v for v in layers[name][column]]


def read_store_layers(engine: Engine) -> dict[str, gpd.GeoDataFrame]:
    """Every planning layer of the store as WGS84 GeoDataFrames (empty layers left out)."""
    layers = {}
    with engine.connect() as conn:
        for name, sql in STORE_QUERIES.items():
            gdf = _read(conn, sql)
            if len(gdf):
                layers[name] = gdf
    _join_arrays(layers)
    return layers


def export_store(engine: Engine, out, radius_m: float | None = None) -> dict:
    """Write the store's planning layers as GeoParquet partitioned by street; returns the metadata."""
    from geodata.parquet import export_parquet

    return export_parquet(read_store_layers(engine), out, radius_m=radius_m)


# street by street --------------------------------------------------------------------------------

def store_streets(engine: Engine) -> list[str]:
    """Codes of the streets that hold grids; raises :class:`InputError` when rows have no street.

    The per-street export needs every grid, household and member in a street (grid → community →
    street, as the store partitions them); otherwise use the whole-store export.
    """
    with engine.connect() as conn:
        lost = {name: int(conn.execute(sa.text(sql)).scalar_one()) for name, sql in ORPHANS.items()}
        streets = [r[0] for r in conn.execute(sa.text(f"SELECT DISTINCT c.street_code {GRID_STREET_JOIN} "
                                                      "WHERE c.street_code IS NOT NULL ORDER BY 1"))]
    problems = [f"{name}: {n} rows in no street (grid → community → street)" for name, n in lost.items() if n]
    if problems:
        raise InputError(problems + ["export without --cluster places them by location"], source="store")
    return streets


def export_store_centres(engine: Engine, out, bounds: dict) -> tuple[dict[str, int], float | None]:
    """Service centres, each into the street of the grid holding it (else the nearest grid); returns
    rows per street and the largest centre ``radius_m`` (metres, None without centres).

    ``bounds`` (street → WGS84 box) is widened in place.
    """
    with engine.connect() as conn:
        centres = _read(conn, CENTRE_STREETS)
    counts = {}
    for street, rows in centres.groupby("street", sort=True):
        part = rows.drop(columns=["street"])
        write_partition(part, Path(out) / "service_centres", str(street))
        counts[str(street)] = len(part)
        widen_bounds(bounds, str(street), part.total_bounds)
    radius = centres["radius_m"].max() if len(centres) and centres["radius_m"].notna().any() else None
    return counts, (float(radius) if radius is not None else None)


def export_store_street(database_url: str, street: str, out) -> dict:
    """One street's grids, communities, households and members from their partitions to GeoParquet.

    Runs as one task on a worker (its own engine, one street in memory); returns ``counts`` (rows
    per layer), ``bounds`` (the street's WGS84 box) and ``seconds``.
    """
    from geodata.store.session import make_engine

    started = time.perf_counter()
    with make_engine(database_url).connect() as conn:
        layers = {name: _read(conn, sql, street=street) for name, sql in STREET_QUERIES.items()}
    _join_arrays(layers)
    bounds: dict = {}
    counts = write_street({k: v for k, v in layers.items() if len(v)}, out, street, bounds)
    return {"street": street, "counts": counts, "bounds": bounds.get(street), "seconds": time.perf_counter() - started}
