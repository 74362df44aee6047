"""PostGIS side of what-if grid edits (网格调整): load a community's grids, save an edit atomically.

``load_edit_layers`` reads the grids of the receiving grid's community and their households (ids,
grid codes and points only — no personal data). ``commit_edit`` recomputes the edit on rows locked
``FOR UPDATE`` and writes it in one transaction: grid polygons (MultiPolygon, WGS84), their H3 cells
(``grid_cells``, resolution 10), households' ``grid_code``; the current 包片联户 runs holding links of
moved households are flagged (``link_runs.summary.stale_households``) so that a planner re-links them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import geopandas as gpd
import shapely
from shapely.geometry import MultiPolygon
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from gridmap.cells import polygon_to_cells, to_signed
from gridmap.contract import H3_POINT_RES
from gridmap.districting import EditResult, preview_edit


class UnknownGrid(LookupError):
    """The receiving grid is not in the store."""


@dataclass
class CommittedEdit:
    """What ``commit_edit`` wrote."""

    result: EditResult
    grids_updated: int
    grids_removed: int
    households_moved: int
    links_flagged: int
    runs_flagged: int


def _read(conn: Connection, to_grid: str, lock: bool):
    row = conn.execute(text("SELECT community_code FROM grids WHERE grid_code = :g"), {"g": to_grid}).first()
    if row is None:
        raise UnknownGrid(to_grid)
    comm = row[0]
    grids = conn.execute(text(
        "SELECT grid_code, community_code, kind, ST_AsBinary(geom) FROM grids "
        "WHERE grid_code = :g OR (CAST(:c AS text) IS NOT NULL AND community_code = :c) ORDER BY grid_code"
        + (" FOR UPDATE" if lock else "")), {"g": to_grid, "c": comm}).all()
    codes = [g[0] for g in grids]
    hh = conn.execute(text(
        "SELECT household_id, grid_code, ST_X(geom), ST_Y(geom) FROM households WHERE grid_code = ANY(:codes) "
        "ORDER BY household_id" + (" FOR UPDATE" if lock else "")), {"codes": codes}).all()
    g = gpd.GeoDataFrame(
        {"grid_code": codes, "community_code": [r[1] for r in grids], "kind": [r[2] for r in grids]},
        geometry=shapely.from_wkb([bytes(r[3]) for r in grids]), crs="EPSG:4326",
    )
    h = gpd.GeoDataFrame(
        {"household_id": [r[0] for r in hh], "grid_code": [r[1] for r in hh]},
        geometry=gpd.points_from_xy([r[2] for r in hh], [r[3] for r in hh]), crs="EPSG:4326",
    )
    return g, h


def load_edit_layers(engine: Engine, to_grid: str) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Grids of ``to_grid``'s community and their households (``household_id``, ``grid_code``, point)."""
    with engine.connect() as conn:
        return _read(conn, to_grid, lock=False)


def preview(engine: Engine, to_grid: str, cells=None, areas=None) -> EditResult:
    """The edit computed on the stored grids, nothing written."""
    grids, households = load_edit_layers(engine, to_grid)
    return preview_edit(grids, households, to_grid, cells=cells, areas=areas)


def commit_edit(engine: Engine, to_grid: str, cells=None, areas=None) -> CommittedEdit:
    """See ``_commit_edit``; afterwards cached region scopes are dropped (grids changed)."""
    from geodata.store.auth import clear_cache

    try:
        return _commit_edit(engine, to_grid, cells=cells, areas=areas)
    finally:
        clear_cache()


def _commit_edit(engine: Engine, to_grid: str, cells=None, areas=None) -> CommittedEdit:
    """Apply the edit in one transaction (see the module docstring); nothing is written if any step fails."""
    with engine.begin() as conn:
        grids, households = _read(conn, to_grid, lock=True)
        result = preview_edit(grids, households, to_grid, cells=cells, areas=areas)
        updated = removed = 0
        for r in result.grids.itertuples():
            if r.removed:
                conn.execute(text("DELETE FROM grids WHERE grid_code = :g"), {"g": r.grid_code})
                removed += 1
                continue
            geom = r.geometry if r.geometry.geom_type == "MultiPolygon" else MultiPolygon(
                [p for p in shapely.get_parts(r.geometry) if p.geom_type == "Polygon"])
            conn.execute(text("UPDATE grids SET geom = ST_Multi(ST_GeomFromWKB(:wkb, 4326)), updated_at = now() "
                              "WHERE grid_code = :g"), {"wkb": shapely.to_wkb(geom), "g": r.grid_code})
            conn.execute(text("DELETE FROM grid_cells WHERE grid_code = :g"), {"g": r.grid_code})
            cells_of = to_signed(polygon_to_cells(geom, H3_POINT_RES)).tolist()
            if cells_of:
                conn.execute(text("INSERT INTO grid_cells (grid_code, h3) SELECT :g, unnest(CAST(:c AS bigint[]))"),
                             {"g": r.grid_code, "c": cells_of})
            updated += 1
        ids = result.moved["household_id"].astype(str).tolist()
        flagged_links = flagged_runs = 0
        if ids:
            conn.execute(text("UPDATE households SET grid_code = :g WHERE household_id = ANY(:ids)"), {"g": to_grid, "ids": ids})
            runs = conn.execute(text(
                "SELECT l.run_id, array_agg(l.household_id ORDER BY l.household_id) FROM links l "
                "JOIN link_runs r ON r.run_id = l.run_id WHERE r.is_current AND l.household_id = ANY(:ids) "
                "GROUP BY l.run_id ORDER BY l.run_id"), {"ids": ids}).all()
            for run_id, stale in runs:
                conn.execute(text(
                    "UPDATE link_runs SET summary = coalesce(summary, '{}'::jsonb) || jsonb_build_object('stale_households', "
                    "(SELECT coalesce(jsonb_agg(DISTINCT x ORDER BY x), '[]'::jsonb) FROM jsonb_array_elements_text("
                    "coalesce(summary->'stale_households', '[]'::jsonb) || CAST(:new AS jsonb)) AS x)) WHERE run_id = :r"),
                    {"new": json.dumps(list(stale)), "r": run_id})
                flagged_links += len(stale)
            flagged_runs = len(runs)
    return CommittedEdit(result=result, grids_updated=updated, grids_removed=removed, households_moved=len(ids),
                         links_flagged=flagged_links, runs_flagged=flagged_runs)


__all__ = ["UnknownGrid", "CommittedEdit", "load_edit_layers", "preview", "commit_edit"]
