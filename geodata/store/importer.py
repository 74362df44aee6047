"""Bulk import of a layer into PostGIS: one transaction, COPY into a staging table, upsert by id.

Why this shape: ``COPY`` moves ~100k rows/s where ORM inserts move ~2k; the staging table lets one
``INSERT … ON CONFLICT`` upsert everything, so a re-import of the same file changes nothing, and the
single transaction means a failure at any row (or a lost connection) leaves every table as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import shapely
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import Engine

from gridmap.cells import points_to_cells, polygon_to_cells, to_signed
from gridmap.contract import GEOMETRY_KIND, H3_POINT_RES, ID_COLUMN
from geodata.store.models import LAYER_TABLES

#: Columns copied per layer (besides geom/h3); the order is the COPY order.
COLUMNS = {
    "streets": ["code", "name"],
    "communities": ["code", "name", "street_code"],
    "grids": ["grid_code", "name", "community_code", "kind", "has_branch", "branch_name"],
    "households": ["household_id", "grid_code", "size", "tags", "name", "phone", "id_number"],
    "members": ["member_id", "grid_code", "kind", "skills", "available", "min_links", "max_links", "name", "phone"],
    "service_centres": ["centre_id", "name", "kind", "radius_m"],
    "incidents": ["incident_id", "category", "level", "status", "required_skill", "reported_at", "grid_code", "source"],
}
ARRAY_COLUMNS = {"tags", "skills"}
DEFAULTS = {"members": {"kind": "member", "available": True}, "incidents": {"status": "reported"}}


@dataclass
class ImportResult:
    """What an import did: rows read, inserted and updated (and deleted with ``replace``)."""

    layer: str
    rows: int
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    cells: int = 0
    notes: list[str] = field(default_factory=list)


def _pg_array(v) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    items = v if isinstance(v, (list, tuple)) else [p for p in str(v).split(",") if p]
    esc = ['"' + str(x).replace("\\", "\\\\").replace('"', '\\"') + '"' for x in items]
    return "{" + ",".join(esc) + "}"


def _clean(v):
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return None if np.isnan(v) else float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    return v


def _china_time(v):
    if v is None:
        return None
    t = pd.Timestamp(v)
    if t.tzinfo is None:
        t = t.tz_localize("Asia/Shanghai")
    return t.to_pydatetime()


def _rows(gdf: gpd.GeoDataFrame, layer: str, cols: list[str]):
    defaults = DEFAULTS.get(layer, {})
    data = {}
    for c in cols:
        if c in gdf.columns:
            s = gdf[c]
            if c in ARRAY_COLUMNS:
                data[c] = [_pg_array(v) for v in s]
            else:
                vals = [_clean(v) for v in s]
                if c in defaults:
                    vals = [defaults[c] if v is None else v for v in vals]
                data[c] = vals
        else:
            data[c] = [defaults.get(c)] * len(gdf)
    if layer == "incidents":
        # Times without a zone are China Standard Time (UTC+8), as every Chinese platform writes them.
        data["reported_at"] = [_china_time(v) for v in data["reported_at"]]
    geoms = shapely.set_srid(gdf.geometry.values, 4326)
    data["geom"] = shapely.to_wkb(geoms, hex=True, include_srid=True)
    if GEOMETRY_KIND[layer] == "point" and "h3" in LAYER_TABLES[layer].c:
        data["h3"] = to_signed(points_to_cells(gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy(), H3_POINT_RES)).tolist()
    return data


def import_layer(engine: Engine, layer: str, gdf: gpd.GeoDataFrame, replace: bool = False) -> ImportResult:
    """Load a validated layer (WGS84, contract columns — see ``geodata.io.read_layer``) in ONE transaction.

    Rows are upserted by their id, so importing the same file twice leaves the table unchanged.
    With ``replace=True`` rows whose id is not in the file are deleted too (same transaction).
    For ``grids`` the H3 cell set (resolution 10) of each grid is rewritten; a grid smaller than a
    cell still gets the cell of its representative point.
    """
    table = LAYER_TABLES[layer]
    idcol = ID_COLUMN[layer]
    cols = list(COLUMNS[layer])
    data = _rows(gdf, layer, cols)
    copy_cols = cols + (["h3"] if "h3" in data else []) + ["geom"]
    result = ImportResult(layer=layer, rows=len(gdf))
    stage = f"_stage_{layer}"
    try:
        _copy_upsert(engine, layer, gdf, table, idcol, copy_cols, data, stage, replace, result)
    except psycopg.Error as e:
        # Raised from the raw COPY cursor: give callers SQLAlchemy's exception classes (OperationalError
        # for a lost server, …) like every other store call. The transaction has been rolled back.
        raise sa_exc.DBAPIError.instance(f"import {layer}", None, e, psycopg.Error) from e
    if layer in ("streets", "communities", "grids"):
        from geodata.store.auth import clear_cache

        clear_cache()  # region scopes are expanded from these tables
    return result


def _copy_upsert(engine, layer, gdf, table, idcol, copy_cols, data, stage, replace, result) -> None:
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE {stage} (LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DROP")
            with cur.copy(f"COPY {stage} ({', '.join(copy_cols)}) FROM STDIN") as cp:
                for row in zip(*(data[c] for c in copy_cols)):
                    cp.write_row(row)
            update = ", ".join(f"{c} = EXCLUDED.{c}" for c in copy_cols if c != idcol)
            changed = " OR ".join(f"{table.name}.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in copy_cols if c != idcol)
            cur.execute(
                f"INSERT INTO {table.name} ({', '.join(copy_cols)}) SELECT {', '.join(copy_cols)} FROM {stage} "
                f"ON CONFLICT ({idcol}) DO UPDATE SET {update} WHERE {changed} RETURNING (xmax = 0)"
            )
            flags = [r[0] for r in cur.fetchall()]
            result.inserted = sum(1 for f in flags if f)
            result.updated = len(flags) - result.inserted
            if replace:
                cur.execute(f"DELETE FROM {table.name} t WHERE NOT EXISTS (SELECT 1 FROM {stage} s WHERE s.{idcol} = t.{idcol})")
                result.deleted = cur.rowcount
            if layer == "grids":
                result.cells = _write_grid_cells(cur, gdf)


def _write_grid_cells(cur, grids: gpd.GeoDataFrame) -> int:
    codes = grids["grid_code"].tolist()
    cur.execute("DELETE FROM grid_cells WHERE grid_code = ANY(%s)", (codes,))
    n = 0
    with cur.copy("COPY grid_cells (grid_code, h3) FROM STDIN") as cp:
        for code, geom in zip(codes, grids.geometry.values):
            for cell in to_signed(polygon_to_cells(geom, H3_POINT_RES)).tolist():
                cp.write_row((code, cell))
                n += 1
    return n


def table_counts(engine: Engine) -> dict[str, int]:
    """Row count of every store table (used to prove a failed import changed nothing)."""
    names = [t.name for t in LAYER_TABLES.values()] + ["grid_cells", "link_runs", "links"]
    with engine.connect() as conn:
        return {n: conn.execute(text(f"SELECT count(*) FROM {n}")).scalar_one() for n in names}
