"""Bulk import of a layer into PostGIS: one transaction, COPY into a staging table, upsert by id.

Before writing, the import places things and checks them against what the store holds, inside the
same transaction: a household's or member's ``grid_code`` must name a stored grid holding its point
(within 50 m; blank codes are derived from the polygons), a grid without ``community_code`` takes
the community polygon holding most of it, and ``replace`` may not remove grids that households or
members still point at. Only the columns the file has are written, so a file with id + grid only
never blanks names or phones. Every import leaves one ``audit_log`` row (action ``import``).

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
from gridmap.contract import COLUMNS as CONTRACT_COLUMNS
from gridmap.contract import GEOMETRY_KIND, H3_POINT_RES, ID_COLUMN, LIST_COLUMNS, column_names
from geodata.errors import InputError
from geodata.store.auth import audit_log
from geodata.store.models import LAYER_TABLES, LOOKUPS
from geodata.store.partitions import GRID_STREET, ensure_street_partitions, restreet
from geodata.validate import GRID_TOLERANCE_M, check_grid_codes, derive_community_codes

#: Columns copied per layer (besides geom/h3), from the data contract; the order is the COPY order.
COLUMNS = {layer: list(column_names(layer)) for layer in CONTRACT_COLUMNS}
ARRAY_COLUMNS = set(LIST_COLUMNS)
#: What a blank cell becomes, where the contract gives a default (members' kind and availability …).
DEFAULTS = {layer: {c.name: c.default for c in cols if c.default is not None} for layer, cols in CONTRACT_COLUMNS.items()}


#: Most ids one audit row lists; a larger import keeps its counts and says the list was cut.
AUDIT_MAX_IDS = 10_000


@dataclass(frozen=True)
class Actor:
    """Who runs an import, for the audit log: ``by`` is ``os:<user>`` from the CLI or ``token:<id>``."""

    by: str
    token_id: int | None = None
    role: str | None = None
    member_id: str | None = None


@dataclass
class ImportResult:
    """What an import did: rows read, inserted, updated, unchanged, derived (and deleted with ``replace``)."""

    layer: str
    rows: int
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    derived: int = 0
    cells: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated


def _pg_array(v) -> str | None:
    """A ``tags``/``skills`` cell as a PostgreSQL array literal for COPY.

    Lists are the contract; a comma-joined string (what ``geodata.io`` reads from a cell) is split.
    """
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    items = list(v) if isinstance(v, (list, tuple, np.ndarray)) else [p for p in str(v).split(",") if p]
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
    if "reported_at" in data:
        # Times without a zone are China Standard Time (UTC+8), as every Chinese platform writes them.
        data["reported_at"] = [_china_time(v) for v in data["reported_at"]]
    geoms = shapely.set_srid(gdf.geometry.values, 4326)
    data["geom"] = shapely.to_wkb(geoms, hex=True, include_srid=True)
    if GEOMETRY_KIND[layer] == "point" and "h3" in LAYER_TABLES[layer].c:
        data["h3"] = to_signed(points_to_cells(gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy(), H3_POINT_RES)).tolist()
    return data


def import_layer(engine: Engine, layer: str, gdf: gpd.GeoDataFrame, replace: bool = False, *, fix: bool = False,
                 actor: Actor | None = None, tolerance_m: float = GRID_TOLERANCE_M) -> ImportResult:
    """Load a validated layer (WGS84, contract columns — see ``geodata.io.read_layer``) in ONE transaction.

    Parameters
    ----------
    replace : also delete stored rows whose id is not in the file (refused for grids that households
        or members still point at).
    fix : re-derive a household's/member's ``grid_code`` that names no grid or a grid more than
        ``tolerance_m`` metres from its point, instead of refusing the file.
    actor : who imports, written to the audit log.

    Rows are upserted by their id, writing only the columns ``gdf`` has, so importing the same file
    twice leaves the table unchanged. For ``grids`` the H3 cell set (resolution 10) of each grid is
    rewritten; a grid smaller than a cell still gets the cell of its representative point.

    Raises
    ------
    InputError
        A wrong ``grid_code`` (naming the row), or ``replace`` orphaning households/members; nothing
        is written.
    """
    table = LAYER_TABLES[layer]
    idcol = ID_COLUMN[layer]
    result = ImportResult(layer=layer, rows=len(gdf))
    try:
        with engine.begin() as conn:
            gdf = _place(conn, layer, gdf, fix, tolerance_m, result)
            cols = [c for c in COLUMNS[layer] if c == idcol or c in gdf.columns]
            data = _rows(gdf, layer, cols)
            copy_cols = cols + (["h3"] if "h3" in data else []) + ["geom"]
            changed_ids = _copy_upsert(conn, layer, gdf, table, idcol, copy_cols, data, f"_stage_{layer}", replace, result)
            if result.rows:  # an empty file (header only) is a no-op and leaves no trace
                _audit(conn, layer, result, changed_ids, actor)
    except psycopg.Error as e:
        # Raised from the raw COPY cursor: give callers SQLAlchemy's exception classes (OperationalError
        # for a lost server, …) like every other store call. The transaction has been rolled back.
        raise sa_exc.DBAPIError.instance(f"import {layer}", None, e, psycopg.Error) from e
    if layer in ("streets", "communities", "grids"):
        from geodata.store.auth import clear_cache

        clear_cache()  # region scopes are expanded from these tables
    return result


def _place(conn, layer: str, gdf: gpd.GeoDataFrame, fix: bool, tolerance_m: float, result: ImportResult):
    """Grid codes of points checked/derived against the stored grids; community codes of grids derived."""
    source = gdf.attrs.get("source") or layer
    if layer in ("households", "members"):
        # FOR SHARE: a grid edit committing meanwhile waits, so the check holds when this import commits.
        grids = gpd.read_postgis(text("SELECT grid_code, geom FROM grids ORDER BY grid_code FOR SHARE"), conn,
                                 geom_col="geom")
        had_column = "grid_code" in gdf.columns
        out, problems, notes = check_grid_codes(gdf, grids, layer, source, fix=fix, tolerance_m=tolerance_m,
                                                rows_above=gdf.attrs.get("rows_above"))
        if problems:
            raise InputError(problems)
        before = gdf["grid_code"] if had_column else pd.Series(None, index=gdf.index, dtype=object)
        result.derived = int((out["grid_code"].notna() & (before.astype(object) != out["grid_code"])).sum())
        result.notes += notes
        return out
    if layer == "grids":
        communities = gpd.read_postgis(text("SELECT code, geom FROM communities"), conn, geom_col="geom")
        blank = gdf["community_code"].isna().sum() if "community_code" in gdf.columns else len(gdf)
        if blank and len(communities):
            out, notes = derive_community_codes(gdf, communities)
            result.derived = int(out["community_code"].notna().sum() - (len(gdf) - blank))
            result.notes += notes
            return out
    return gdf


def _copy_upsert(conn, layer, gdf, table, idcol, copy_cols, data, stage, replace, result) -> list[str]:
    """COPY into a staging table and upsert; returns the ids inserted or updated."""
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE {stage} (LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DROP")
        with cur.copy(f"COPY {stage} ({', '.join(copy_cols)}) FROM STDIN") as cp:
            for row in zip(*(data[c] for c in copy_cols)):
                cp.write_row(row)
        moved: list[str] = []
        stored: set[str] = set()
        if layer in LOOKUPS:
            copy_cols = copy_cols + ["street_code"]
            moved = _street_stage(conn, cur, layer, table.name, idcol, stage)
            # a partitioned table cannot return xmax: an id is new when its lookup row is
            cur.execute(f"SELECT s.{idcol} FROM {stage} s JOIN {LOOKUPS[layer].name} l USING ({idcol})")
            stored = {r[0] for r in cur.fetchall()}
        conflict = f"street_code, {idcol}" if layer in LOOKUPS else idcol
        update = ", ".join(f"{c} = EXCLUDED.{c}" for c in copy_cols if c != idcol)
        changed = " OR ".join(f"{table.name}.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in copy_cols if c != idcol)
        is_new = f"{idcol} <> ALL(%(stored)s)" if layer in LOOKUPS else "(xmax = 0)"
        cur.execute(
            f"INSERT INTO {table.name} ({', '.join(copy_cols)}) SELECT {', '.join(copy_cols)} FROM {stage} "
            f"ON CONFLICT ({conflict}) DO UPDATE SET {update} WHERE {changed} RETURNING {is_new}, {idcol}",
            {"stored": list(stored)} if layer in LOOKUPS else None)
        rows = cur.fetchall()
        returned = {r[1] for r in rows}
        rows += [(False, i) for i in moved if i not in returned]  # moved street, nothing else changed
        result.inserted = sum(1 for r in rows if r[0])
        result.updated = len(rows) - result.inserted
        if replace:
            if layer == "grids":
                _refuse_orphans(cur, stage)
            cur.execute(f"DELETE FROM {table.name} t WHERE NOT EXISTS (SELECT 1 FROM {stage} s WHERE s.{idcol} = t.{idcol})")
            result.deleted = cur.rowcount
        if layer == "grids":
            result.cells = _write_grid_cells(cur, gdf)
    if layer in ("streets", "communities", "grids"):
        restreet(conn)  # a grid or community that changed street takes its rows along
    return [r[1] for r in rows]


def _street_stage(conn, cur, layer: str, table: str, idcol: str, stage: str) -> list[str]:
    """Give staged rows their street (partition key), create new streets' partitions, move rows that
    changed street; returns the ids moved.

    Households and members take their grid's street; incidents keep a given street, else their grid's.
    A moved row is UPDATEd across partitions (not deleted and re-inserted) so the visits, events …
    that reference its id through the lookup table stay.
    """
    keep = " AND s.street_code IS NULL" if layer == "incidents" else ""
    cur.execute(f"UPDATE {stage} s SET street_code = gs.street_code FROM ({GRID_STREET}) gs "
                f"WHERE s.grid_code = gs.grid_code{keep}")
    cur.execute(f"SELECT DISTINCT street_code FROM {stage} WHERE street_code IS NOT NULL")
    codes = [r[0] for r in cur.fetchall()]
    tables = ("households", "links") if layer == "households" else (table,)
    ensure_street_partitions(conn, codes, tables)  # same connection and transaction as cur
    lookup = LOOKUPS[layer].name
    # The narrow lookup says which ids moved; the partitioned table is written only when some did.
    cur.execute(f"SELECT s.{idcol} FROM {stage} s JOIN {lookup} l ON l.{idcol} = s.{idcol} "
                f"WHERE l.street_code IS DISTINCT FROM s.street_code")
    if not cur.fetchall():
        return []
    cur.execute(
        f"UPDATE {table} t SET street_code = s.street_code, grid_code = COALESCE(s.grid_code, t.grid_code) "
        f"FROM {stage} s JOIN {lookup} l ON l.{idcol} = s.{idcol} "
        f"WHERE t.{idcol} = s.{idcol} AND t.street_code IS NOT DISTINCT FROM l.street_code "
        f"AND l.street_code IS DISTINCT FROM s.street_code RETURNING t.{idcol}")
    return [r[0] for r in cur.fetchall()]


_ORPHANS = """
WITH removed AS (SELECT grid_code FROM grids t WHERE NOT EXISTS (SELECT 1 FROM {stage} s WHERE s.grid_code = t.grid_code))
SELECT (SELECT count(*) FROM households WHERE grid_code IN (SELECT grid_code FROM removed)),
       (SELECT count(*) FROM members WHERE grid_code IN (SELECT grid_code FROM removed)),
       (SELECT count(*) FROM removed),
       (SELECT array_agg(grid_code ORDER BY grid_code) FROM (SELECT grid_code FROM removed LIMIT 10) r)
"""


def _refuse_orphans(cur, stage: str) -> None:
    """Refuse a ``replace`` of grids that would leave households or members pointing at removed grids."""
    cur.execute(_ORPHANS.format(stage=stage))
    households, members, removed, some = cur.fetchone()
    if households or members:
        raise InputError(
            f"--replace would remove {removed:,} grid(s) ({', '.join(some or [])}{' …' if removed > 10 else ''}) that "
            f"{households:,} households and {members:,} members still point at; nothing was changed. Commit a redraw "
            "with 'gridmap redraw --commit' (it reassigns households and members by location), or keep those grids "
            "in the file")


def _audit(conn, layer: str, result: ImportResult, changed_ids: list[str], actor: Actor | None) -> None:
    """One ``audit_log`` row for the import, in its transaction (ids of the rows written, capped)."""
    actor = actor or Actor(by="unspecified")
    ids = [str(i) for i in changed_ids[:AUDIT_MAX_IDS]]
    detail = {"by": actor.by, "rows": result.rows, "inserted": result.inserted, "updated": result.updated,
              "unchanged": result.unchanged, "deleted": result.deleted, "derived": result.derived,
              "ids_cut": len(changed_ids) > AUDIT_MAX_IDS}
    conn.execute(audit_log.insert().values(token_id=actor.token_id, role=actor.role, member_id=actor.member_id,
                                           action="import", what=layer, ids=ids, n_ids=len(ids), detail=detail))


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
