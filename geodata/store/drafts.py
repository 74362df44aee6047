"""Redraw drafts (网格调整草案) in PostGIS's ``redraw_drafts`` table, and the inputs a redraw needs.

A draft keeps its grids as a GeoJSON FeatureCollection (WGS84) and each household's proposed grid as
``{household_id: grid_code}``; the figures are the domain's (``gridmap.districting``). No personal data.
"""

from __future__ import annotations

import json

import geopandas as gpd
from sqlalchemy import text
from sqlalchemy.engine import Engine

from geodata.jsonenc import dumps

_COLUMNS = "draft_id, community_code, name, created_by, created_at, params, versions, summary, committed_at"


def community_inputs(engine: Engine, community_code: str) -> dict[str, gpd.GeoDataFrame]:
    """The community polygon (``code``, ``kind``), its current grids and households (ids, grid, point), WGS84.

    A community's kind is its grids' most common kind (urban unless they say rural).
    """
    with engine.connect() as conn:
        grids = gpd.read_postgis(text("SELECT grid_code, name, community_code, kind, has_branch, geom FROM grids "
                                      "WHERE community_code = :c ORDER BY grid_code"), conn, geom_col="geom",
                                 params={"c": community_code})
        community = gpd.read_postgis(text("SELECT code, name, street_code, geom FROM communities WHERE code = :c"),
                                     conn, geom_col="geom", params={"c": community_code})
        households = gpd.read_postgis(text(
            "SELECT h.household_id, h.grid_code, h.geom FROM households h JOIN communities c ON c.code = :c "
            "AND ST_Intersects(c.geom, h.geom) ORDER BY h.household_id"), conn, geom_col="geom",
            params={"c": community_code})
    kinds = grids["kind"].dropna()
    community["kind"] = kinds.mode().iloc[0] if len(kinds) else "urban"
    return {"communities": community, "grids": grids, "households": households}


def save_draft(engine: Engine, *, community_code: str, name: str, created_by: str, params: dict, versions: dict,
               grids: gpd.GeoDataFrame, assignment: dict, summary: dict) -> int:
    """Store a draft; returns its id. ``grids`` WGS84 (``grid_code`` blank for new grids)."""
    with engine.begin() as conn:
        return conn.execute(text(
            "INSERT INTO redraw_drafts (community_code, name, created_by, params, versions, grids, assignment, summary) "
            "VALUES (:c, :n, :b, CAST(:p AS jsonb), CAST(:v AS jsonb), CAST(:g AS jsonb), CAST(:a AS jsonb), "
            "CAST(:s AS jsonb)) RETURNING draft_id"),
            {"c": community_code, "n": name, "b": created_by, "p": dumps(params), "v": dumps(versions),
             "g": grids.to_crs("EPSG:4326").to_json(drop_id=True), "a": dumps(assignment), "s": dumps(summary)},
        ).scalar_one()


def get_draft(engine: Engine, draft_id: int) -> dict | None:
    """A draft with ``grids`` as a GeoDataFrame (WGS84), ``assignment``, its manual ``edits`` and
    ``edit_pos`` (how many of them are applied); None when there is none."""
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {_COLUMNS}, grids, assignment, edits, edit_pos FROM redraw_drafts "
                                "WHERE draft_id = :d"),
                           {"d": int(draft_id)}).mappings().first()
    if row is None:
        return None
    out = dict(row)
    features = out["grids"] if isinstance(out["grids"], dict) else json.loads(out["grids"])
    out["grids"] = gpd.GeoDataFrame.from_features(features["features"], crs="EPSG:4326")
    return out


def list_drafts(engine: Engine, community_codes: frozenset[str] | None) -> list[dict]:
    """Drafts of ``community_codes`` (None: all), newest first, without their grids."""
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {_COLUMNS} FROM redraw_drafts WHERE CAST(:all AS boolean) "
                                 "OR community_code = ANY(:codes) ORDER BY draft_id DESC"),
                            {"all": community_codes is None, "codes": sorted(community_codes or ())}).mappings().all()
    return [dict(r) for r in rows]


def mark_committed(engine: Engine, draft_id: int) -> None:
    """Note that a draft was committed (it stays for the record)."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE redraw_drafts SET committed_at = now() WHERE draft_id = :d"), {"d": int(draft_id)})


def save_state(engine: Engine, draft_id: int, *, grids: gpd.GeoDataFrame, assignment: dict, summary: dict,
               edits: list, edit_pos: int) -> None:
    """Replace a draft's grids, assignment, figures and edit stack in one statement (an edit, undo or redo).

    Refused (``ValueError``) once the draft is committed: a committed plan stays as it was applied.
    """
    with engine.begin() as conn:
        done = conn.execute(text(
            "UPDATE redraw_drafts SET grids = CAST(:g AS jsonb), assignment = CAST(:a AS jsonb), "
            "summary = CAST(:s AS jsonb), edits = CAST(:e AS jsonb), edit_pos = :p "
            "WHERE draft_id = :d AND committed_at IS NULL"),
            {"d": int(draft_id), "g": grids.to_crs("EPSG:4326").to_json(drop_id=True), "a": dumps(assignment),
             "s": dumps(summary), "e": dumps(edits), "p": int(edit_pos)}).rowcount
    if done != 1:
        raise ValueError(f"draft {draft_id} is committed or missing; it cannot be edited")


def household_points(engine: Engine, household_ids: list[str]) -> gpd.GeoDataFrame:
    """Points (WGS84) of the given households: ``household_id`` and ``building`` (楼栋, an address part that
    is not personal data: the editor keeps a building's households together). No names, phones or IDs."""
    with engine.connect() as conn:
        return gpd.read_postgis(text("SELECT household_id, building, geom FROM households WHERE household_id = ANY(:ids) "
                                     "ORDER BY household_id"), conn, geom_col="geom",
                                params={"ids": list(household_ids)})


def community_names(engine: Engine, codes: frozenset[str] | None) -> list[tuple[str, str]]:
    """``(code, name)`` of the communities in ``codes`` (None: all), by code."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT code, coalesce(name, code) FROM communities WHERE CAST(:all AS boolean) "
                                 "OR code = ANY(:codes) ORDER BY code"),
                            {"all": codes is None, "codes": sorted(codes or ())}).all()
    return [(r[0], r[1]) for r in rows]
