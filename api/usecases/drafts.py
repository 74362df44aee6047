"""Use case: redraw a community as a draft (网格调整草案), compare drafts, commit one.

A draft is computed by the districting engine (``gridmap.districting.redraw``) on the stored community,
its grids and households, with the planner's controls: locked grids (kept exactly as they are — their
area and households are taken out of the problem and put back unchanged), the household band and
minimal change. It is saved with the grid versions it was computed on, so committing it later through
``geodata.store.grids.commit_redraw`` is refused (409) once someone changed those grids.

Figures (:func:`draft_figures`) are the domain's: grids in band, mean Polsby-Popper (``4πA/P²`` in a
local UTM projection, metres) and households moved.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy.engine import Engine

from api.usecases.audit import audited
from geodata.store import drafts as store
from geodata.store.grids import commit_redraw, scope_versions
from geodata.store.importer import Actor
from gridmap.compactness import polsby_popper
from gridmap.contract import grid_band
from gridmap.metric import metric_crs

#: Columns of a draft's grids besides the geometry.
DRAFT_COLUMNS = ["grid_code", "community_code", "kind", "households", "band_min", "band_max", "in_band",
                 "polsby_popper", "moved", "status"]
STATUS_LOCKED = "locked"


class DraftMissing(LookupError):
    """No such draft (or one outside the user's communities: the same answer)."""


@dataclass
class DraftControls:
    """The planner's controls: grids kept as they are, the band (None: by kind) and minimal change."""

    locked: tuple[str, ...] = ()
    band: tuple[int, int] | None = None
    minimal_change: bool = True
    seed: int = 0


def _locked_rows(grids: gpd.GeoDataFrame, households: gpd.GeoDataFrame, locked: set[str],
                 band: tuple[int, int] | None) -> gpd.GeoDataFrame:
    rows = grids[grids["grid_code"].isin(locked)].copy()
    counts = households["grid_code"].value_counts()
    rows["households"] = rows["grid_code"].map(counts).fillna(0).astype(int)
    bands = [band or grid_band(k) for k in rows["kind"]]
    rows["band_min"], rows["band_max"] = [b[0] for b in bands], [b[1] for b in bands]
    rows["in_band"] = (rows["households"] >= rows["band_min"]) & (rows["households"] <= rows["band_max"])
    rows["moved"], rows["status"] = 0, STATUS_LOCKED
    return rows.rename_geometry("geometry")


def compute_draft(inputs: dict[str, gpd.GeoDataFrame], controls: DraftControls) -> tuple[gpd.GeoDataFrame, dict]:
    """Redraw one community with the planner's controls.

    Returns the draft's grids (WGS84, :data:`DRAFT_COLUMNS`; locked grids unchanged with status
    ``locked``) and ``{household_id: grid_code}`` of every household of the community.
    """
    from gridmap.districting import redraw

    community, grids, households = inputs["communities"], inputs["grids"], inputs["households"]
    locked = set(controls.locked) & set(grids["grid_code"])
    free_hh = households[~households["grid_code"].isin(locked)]
    free_grids = grids[~grids["grid_code"].isin(locked)]
    area = community.copy()
    if locked:  # the locked grids' ground is not the engine's to redraw
        hole = shapely.union_all(grids.loc[grids["grid_code"].isin(locked)].geometry.values)
        area = area.set_geometry([shapely.make_valid(g.difference(hole)) for g in area.geometry.values])
    result = redraw(area.rename(columns={"name": "community_name"}), free_hh,
                    current=free_grids if len(free_grids) else None, band=controls.band,
                    minimal_change=controls.minimal_change, seed=controls.seed)
    drawn = result.grids[[*DRAFT_COLUMNS, "geometry"]]
    kept = _locked_rows(grids, households, locked, controls.band)
    if len(kept):
        kept["polsby_popper"] = polsby_popper(kept.to_crs(metric_crs(kept)).geometry.values)
        drawn = pd.concat([drawn, kept[[*DRAFT_COLUMNS, "geometry"]].to_crs(drawn.crs)], ignore_index=True)
    assignment = dict(zip(households["household_id"], households["grid_code"]))
    assignment.update(zip(free_hh["household_id"], result.households.reindex(free_hh.index)))
    return gpd.GeoDataFrame(drawn, geometry="geometry", crs="EPSG:4326"), assignment


def draft_figures(grids: gpd.GeoDataFrame, assignment: dict, before: dict) -> dict:
    """Grids, grids in band (count and %), mean Polsby-Popper (metres, local UTM) and households moved.

    ``before`` is ``{household_id: grid_code}`` to count moves against (today's, or another draft's).
    """
    metric = grids.to_crs(metric_crs(grids))
    scores = polsby_popper(metric.geometry.values)
    in_band = int(grids["in_band"].astype(bool).sum())
    moved = sum(1 for h, code in assignment.items() if h in before and before[h] != code)
    return {"grids": len(grids), "in_band": in_band, "in_band_pct": 100.0 * in_band / len(grids) if len(grids) else 0.0,
            "mean_polsby_popper": float(np.mean(scores)) if len(scores) else 0.0, "moved": moved,
            "households": len(assignment)}


def create_draft(engine: Engine, community_code: str, controls: DraftControls, *, name: str, created_by: str,
                 on_step=None, audit: tuple[dict, dict] | None = None) -> int:
    """Compute and save a draft of ``community_code``; returns its id.

    ``on_step(step, message)`` (optional) is told when each of the three steps starts (for job progress).
    ``audit`` = ``(who, detail)`` saves the draft with its ``draft_save`` audit row (what
    ``redraw_drafts``, ids: the draft id) in one transaction; without it the save is not audited (setup
    in tests only: every face passes it).
    """
    step = on_step or (lambda n, message: None)
    step(1, "正在读取社区、网格和住户")
    inputs = store.community_inputs(engine, community_code)
    if len(inputs["communities"]) == 0:
        raise DraftMissing(community_code)
    versions = scope_versions(engine, [community_code])
    step(2, "正在重新划分网格")
    grids, assignment = compute_draft(inputs, controls)
    step(3, "正在保存草案")
    today = dict(zip(inputs["households"]["household_id"], inputs["households"]["grid_code"]))
    summary = draft_figures(grids, assignment, today)
    params = {"locked": sorted(controls.locked), "band": list(controls.band) if controls.band else None,
              "minimal_change": controls.minimal_change, "seed": controls.seed}
    save = dict(community_code=community_code, name=name, created_by=created_by, params=params, versions=versions,
                grids=grids, assignment=assignment, summary=summary)
    if audit is None:
        return store.save_draft(engine, **save)
    with audited(engine, audit[0], "draft_save", "redraw_drafts") as (tx, entry):
        draft_id = store.save_draft(tx, **save)
        entry.ids, entry.detail = [str(draft_id)], {**audit[1], "community_code": community_code}
    return draft_id


def open_draft(engine: Engine, draft_id: int, community_codes: frozenset[str] | None) -> dict:
    """A draft of one of ``community_codes`` (None: any); :class:`DraftMissing` otherwise."""
    draft = store.get_draft(engine, draft_id)
    if draft is None or (community_codes is not None and draft["community_code"] not in community_codes):
        raise DraftMissing(draft_id)
    return draft


def compare_drafts(a: dict, b: dict) -> dict:
    """Figures of two drafts side by side, and households placed differently between them."""
    return {"a": a["summary"], "b": b["summary"],
            "moved_between": draft_figures(b["grids"], b["assignment"], a["assignment"])["moved"]}


def household_changes(draft: dict, today: dict) -> list[tuple[str, str | None, str]]:
    """``(household_id, grid today, grid in the draft)`` of every household the draft moves, by id."""
    return sorted((h, today.get(h), code) for h, code in draft["assignment"].items() if today.get(h) != code)


def commit_draft(engine: Engine, draft: dict, actor: Actor, authorise=None, *, allow_out_of_band: bool = False):
    """Apply a draft through ``commit_redraw`` (version checks, band and contiguity rules, audit).

    The grids before and after (GeoJSON, WGS84) and the change list (household ids with their old and
    new grid) go to the audit log as one ``commit_draft`` entry. Raises
    ``geodata.store.grids.EditRefused`` (reason ``stale``, ``out_of_band``, ``non_contiguous``);
    nothing is written then.
    """
    from geodata.store.auth import record_audit

    if draft.get("committed_at") is not None:
        raise DraftMissing(draft["draft_id"])  # a committed draft is a record, not a plan to apply twice
    inputs = store.community_inputs(engine, draft["community_code"])
    today = dict(zip(inputs["households"]["household_id"], inputs["households"]["grid_code"]))
    grids = draft["grids"][["grid_code", "community_code", "kind", "geometry"]].copy()
    grids["grid_code"] = grids["grid_code"].where(grids["grid_code"].notna(), None)
    done = commit_redraw(engine, grids, versions=draft["versions"], authorise=authorise, actor=actor,
                         allow_out_of_band=allow_out_of_band)
    store.mark_committed(engine, draft["draft_id"])
    changes = household_changes(draft, today)
    record_audit(engine, token_id=actor.token_id, role=actor.role, member_id=actor.member_id, action="commit_draft",
                 what="grids", ids=[c[0] for c in changes],
                 detail={"by": actor.by, "draft_id": draft["draft_id"], "community": draft["community_code"],
                         "before": _features(inputs["grids"][["grid_code", "name", "kind", "geom"]]
                                             .rename_geometry("geometry")),
                         "after": _features(draft["grids"][["grid_code", "households", "geometry"]]),
                         "changes": [list(c) for c in changes]})
    return done


# -- manual edits (like DistrictBuilder / Districtr): move H3 cells, undo, redo ---------------------------

#: H3 resolution of the cells a planner clicks or lassoes (res 10: about 15,000 m² each).
EDIT_RES = 10
STATUS_EDITED = "edited"


class EditNotPossible(ValueError):
    """An edit, undo or redo that cannot be made (nothing selected, unknown grid, nothing to undo …)."""


class EditLocked(EditNotPossible):
    """An edit that would change a locked grid (moving ground into one, or taking cells from one).

    The message names the grids (名称（代码）) in Chinese; ``codes`` lists them.
    """

    def __init__(self, message: str, codes):
        super().__init__(message)
        self.codes = list(codes)


@dataclass
class _Touched:
    """A lock breach found after the preview (same shape as ``gridmap.districting.LockedGrids``)."""

    codes: list
    into: bool = False
    shapes: dict = field(default_factory=dict)


def draft_band(draft: dict) -> tuple[int, int] | None:
    """The band the draft was computed with (None: by each grid's kind)."""
    band = (draft.get("params") or {}).get("band")
    return (int(band[0]), int(band[1])) if band else None


def draft_households(engine: Engine, draft: dict) -> gpd.GeoDataFrame:
    """The draft's households (WGS84 points) with ``grid_code`` = the grid the draft puts them in."""
    points = store.household_points(engine, list(draft["assignment"]))
    points["grid_code"] = points["household_id"].map(draft["assignment"])
    return points


def todays_assignment(engine: Engine, community_code: str) -> dict:
    """``{household_id: grid_code}`` as stored today (what "moved" counts against)."""
    households = store.community_inputs(engine, community_code)["households"]
    return dict(zip(households["household_id"], households["grid_code"]))


def draft_locked(draft: dict) -> set[str]:
    """Codes of the draft's locked grids (锁定: kept exactly as they are, never edited by hand)."""
    grids = draft["grids"]
    locked = set((draft.get("params") or {}).get("locked") or ())
    locked |= set(grids.loc[grids["status"] == STATUS_LOCKED, "grid_code"].dropna())
    return locked & set(grids["grid_code"].dropna())


def draft_cells(engine: Engine, draft: dict) -> gpd.GeoDataFrame:
    """The H3 cells (res :data:`EDIT_RES`) overlapping the draft's grids, to click or lasso.

    Columns ``cell`` (H3 index as text), ``grid_code`` (the draft grid holding the cell's centre, else
    the nearest: ``gridmap.districting.shape_grids``, the rule the lock check uses), ``locked`` (that
    grid is locked), ``lon``/``lat`` (the cell's centre, WGS84 degrees, for the lasso) and
    ``households`` (draft households in the cell); WGS84 polygons.
    """
    import h3

    from gridmap.cells import cell_polygon
    from gridmap.districting import shape_grids

    grids = draft["grids"]
    outline = shapely.union_all(grids.geometry.values)
    cells = sorted(h3.h3shape_to_cells_experimental(h3.geo_to_h3shape(outline), EDIT_RES, contain="overlap"))
    centres = [h3.cell_to_latlng(c) for c in cells]
    shapes = gpd.GeoDataFrame({"cell": cells, "lon": [c[1] for c in centres], "lat": [c[0] for c in centres]},
                              geometry=[cell_polygon(c) for c in cells], crs="EPSG:4326")
    shapes["grid_code"] = shape_grids(grids, cells=cells) if cells else []
    shapes["locked"] = shapes["grid_code"].isin(draft_locked(draft))
    homes = draft_households(engine, draft)
    per_cell = pd.Series([h3.latlng_to_cell(p.y, p.x, EDIT_RES) for p in homes.geometry], dtype=object).value_counts()
    shapes["households"] = shapes["cell"].map(per_cell).fillna(0).astype(int)
    return shapes


def grid_names(engine: Engine, draft: dict) -> dict[str, str]:
    """``{grid_code: 名称（代码）}`` of the draft's grids, as pages show them (new grids: 新网格（代码））."""
    names = dict(before_grids(engine, draft["community_code"])[["grid_code", "name"]].itertuples(index=False))
    return {str(c): f"{names.get(c) or '新网格'}（{c}）" for c in draft["grids"]["grid_code"].dropna()}


def _locked_message(e, names: dict[str, str]) -> str:
    named = "、".join(names.get(c, c) for c in e.codes)
    if e.into:
        return f"{named} 是锁定网格（保持原样），不能移入。请选择其他网格。"
    count = sum(e.shapes.values())
    if not count:
        return f"这次修改会改动锁定网格 {named}（锁定网格保持原样），不能移动。"
    return (f"所选单元中有 {count} 个在锁定网格 {named} 里。锁定网格保持原样，不能移出。"
            "请先取消选中这些单元（地图上灰色、虚线框、标有“锁定”的网格）再移动。")


def _split_message(splits: pd.DataFrame, names: dict[str, str]) -> str:
    parts = [f"{s['building']}（移入 {s['moving']} 户，"
             + "，".join(f"{n} 户留在 {names.get(c, c)}" for c, n in s["staying"].items()) + "）"
             for s in splits.to_dict("records")]
    return "会把楼栋拆到不同网格：" + "；".join(parts) + "。"


def preview_draft_edit(engine: Engine, draft: dict, to_grid: str, cells: list[str], *, whole_buildings: bool = False):
    """What moving ``cells`` into ``to_grid`` would do to the draft (nothing saved): counts, band,
    contiguity and Polsby-Popper of every grid touched, and the buildings (楼栋) it would split
    (``gridmap.districting.preview_edit``). Raises :class:`EditLocked` when the edit would change a locked grid;
    ``whole_buildings`` takes every building the cells would split whole."""
    from gridmap.districting import LockedGrids, preview_edit

    if not cells:
        raise EditNotPossible("请先在地图上点选或圈选要移动的网格单元。")
    if to_grid not in set(draft["grids"]["grid_code"]):
        raise EditNotPossible(f"草案里没有网格 {to_grid}。")
    try:
        return preview_edit(draft["grids"], draft_households(engine, draft), to_grid, cells=cells,
                            band=draft_band(draft), locked=draft_locked(draft), whole_buildings=whole_buildings)
    except LockedGrids as e:
        raise EditLocked(_locked_message(e, grid_names(engine, draft)), e.codes) from None


def describe_preview(engine: Engine, draft: dict, result) -> dict:
    """The preview as the editor shows it: touched grids with ``name`` (名称（代码）), households moved,
    notes in Chinese, the buildings split (``building``, ``moving``, ``staying`` as names) and those
    taken whole. No personal data."""
    names = grid_names(engine, draft)
    grids = result.grids.drop(columns="geometry").assign(name=lambda g: g["grid_code"].map(names))
    notes = []
    if result.outside_m2 >= 1.0:
        notes.append(f"所选范围有 {result.outside_m2:,.0f} 平方米在社区以外，不移动。")
    if result.locked_kept_m2 >= 1.0:
        notes.append(f"所选单元有 {result.locked_kept_m2:,.0f} 平方米压在锁定网格上，这部分保持原样，不移动。")
    for row in result.grids.itertuples():
        if row.removed and row.households > 0:
            notes.append(f"{names.get(row.grid_code, row.grid_code)} 将没有地块，但还有 {row.households} 户。")
    splits = [{"building": s["building"], "moving": s["moving"],
               "staying": [{"grid": names.get(c, c), "households": n} for c, n in s["staying"].items()]}
              for s in result.split_buildings.to_dict("records")]
    return {"grids": grids.to_dict("records"), "households_moved": len(result.moved), "issues": notes,
            "split_buildings": splits, "split_message": _split_message(result.split_buildings, names) if splits else "",
            "buildings_added": list(result.buildings_added)}


def _moved_per_grid(grids: gpd.GeoDataFrame, assignment: dict, today: dict) -> list[int]:
    moved = pd.Series([code for h, code in assignment.items() if today.get(h) != code], dtype=object).value_counts()
    return [int(moved.get(code, 0)) for code in grids["grid_code"]]


def _features(rows: gpd.GeoDataFrame) -> list:
    import json

    return json.loads(rows.to_json(drop_id=True))["features"]


def _replace_rows(grids: gpd.GeoDataFrame, codes: set, features: list) -> gpd.GeoDataFrame:
    kept = grids[~grids["grid_code"].isin(codes)]
    if not features:
        return kept.reset_index(drop=True)
    back = gpd.GeoDataFrame.from_features(features, crs="EPSG:4326")
    return gpd.GeoDataFrame(pd.concat([kept, back[kept.columns]], ignore_index=True), geometry="geometry",
                            crs="EPSG:4326")


def _edited_rows(grids: gpd.GeoDataFrame, preview) -> gpd.GeoDataFrame:
    """The touched grids after the edit, in the draft's columns (grids left with no ground dropped)."""
    touched = preview.grids[~preview.grids["removed"]].set_index("grid_code")
    rows = grids[grids["grid_code"].isin(touched.index)].copy()
    for column in ("households", "band_min", "band_max", "in_band", "polsby_popper"):
        rows[column] = rows["grid_code"].map(touched[column]).to_numpy()
    rows["status"] = STATUS_EDITED
    return rows.set_geometry(list(rows["grid_code"].map(touched.geometry))).set_crs("EPSG:4326", allow_override=True)


def _save(engine: Engine, draft: dict, grids, assignment: dict, edits: list, edit_pos: int, today: dict,
          actor: Actor | None = None, action: str = "draft_edit") -> dict:
    from geodata.store.auth import record_audit

    grids = grids.copy()
    grids["moved"] = _moved_per_grid(grids, assignment, today)
    summary = draft_figures(grids, assignment, today)
    store.save_state(engine, draft["draft_id"], grids=grids, assignment=assignment, summary=summary, edits=edits,
                     edit_pos=edit_pos)
    if actor is not None:
        record = edits[edit_pos - 1] if action != "draft_undo" else edits[edit_pos]
        record_audit(engine, token_id=actor.token_id, role=actor.role, member_id=actor.member_id, action=action,
                     what="redraw_drafts", ids=[str(draft["draft_id"])],
                     detail={"by": actor.by, "to_grid": record["to_grid"], "cells": record["cells"],
                             "whole_buildings": bool(record.get("whole_buildings")),
                             "households_moved": len(record["moved"])})
    return {**draft, "grids": grids, "assignment": assignment, "summary": summary, "edits": edits,
            "edit_pos": edit_pos}


def _check_edit(engine: Engine, draft: dict, preview) -> None:
    """Refuse an edit that would split a building, or (belt and braces) touch a locked grid."""
    locked = draft_locked(draft)
    touched = set(preview.grids["grid_code"]) | set(preview.moved["from_grid"])
    if touched & locked:
        raise EditLocked(_locked_message(_Touched(sorted(touched & locked)), grid_names(engine, draft)),
                         sorted(touched & locked))
    if len(preview.split_buildings):
        raise EditNotPossible(_split_message(preview.split_buildings, grid_names(engine, draft))
                              + "请点「整栋一起移入」，或调整所选单元。")
    if preview.moved.empty and len(preview.grids) == 1:
        raise EditNotPossible("所选单元已在该网格内，没有可移动的范围。")


def apply_draft_edit(engine: Engine, draft: dict, to_grid: str, cells: list[str], actor: Actor | None = None, *,
                     whole_buildings: bool = False) -> dict:
    """Move ``cells`` into ``to_grid`` on the draft and push the edit on its stack (the redo tail is
    dropped, as in every editor). Returns the draft as saved.

    Refused (nothing written) when it would change a locked grid (:class:`EditLocked`) or split a
    building's households between grids (:class:`EditNotPossible`; ``whole_buildings`` takes them whole).
    """
    preview = preview_draft_edit(engine, draft, to_grid, cells, whole_buildings=whole_buildings)
    _check_edit(engine, draft, preview)
    codes = set(preview.grids["grid_code"])
    grids = draft["grids"]
    before = _features(grids[grids["grid_code"].isin(codes)])
    after_rows = _edited_rows(grids, preview)
    moved = [[h, f, t] for h, f, t in preview.moved[["household_id", "from_grid", "to_grid"]].itertuples(index=False)]
    record = {"to_grid": to_grid, "cells": [str(c) for c in cells], "whole_buildings": whole_buildings,
              "codes": sorted(codes), "before": before, "after": _features(after_rows), "moved": moved}
    assignment = {**draft["assignment"], **{h: t for h, _, t in moved}}
    edits = list(draft.get("edits") or [])[: draft.get("edit_pos", 0)] + [record]
    today = todays_assignment(engine, draft["community_code"])
    return _save(engine, draft, _replace_rows(grids, codes, record["after"]), assignment, edits, len(edits), today,
                 actor, "draft_edit")


def undo_draft_edit(engine: Engine, draft: dict, actor: Actor | None = None) -> dict:
    """Take back the last applied edit (the stored state before it comes back exactly)."""
    pos = int(draft.get("edit_pos", 0))
    if pos == 0:
        raise EditNotPossible("没有可撤销的修改。")
    record = draft["edits"][pos - 1]
    assignment = {**draft["assignment"], **{h: f for h, f, _ in record["moved"]}}
    grids = _replace_rows(draft["grids"], set(record["codes"]), record["before"])
    today = todays_assignment(engine, draft["community_code"])
    return _save(engine, draft, grids, assignment, draft["edits"], pos - 1, today, actor, "draft_undo")


def redo_draft_edit(engine: Engine, draft: dict, actor: Actor | None = None) -> dict:
    """Apply again the next undone edit."""
    pos, edits = int(draft.get("edit_pos", 0)), list(draft.get("edits") or [])
    if pos >= len(edits):
        raise EditNotPossible("没有可恢复的修改。")
    record = edits[pos]
    assignment = {**draft["assignment"], **{h: t for h, _, t in record["moved"]}}
    grids = _replace_rows(draft["grids"], set(record["codes"]), record["after"])
    today = todays_assignment(engine, draft["community_code"])
    return _save(engine, draft, grids, assignment, edits, pos + 1, today, actor, "draft_redo")


def before_grids(engine: Engine, community_code: str) -> gpd.GeoDataFrame:
    """Today's grids of the community (WGS84) with ``name``, ``households`` today, band and ``in_band``."""
    inputs = store.community_inputs(engine, community_code)
    grids = inputs["grids"].rename_geometry("geometry")
    counts = inputs["households"]["grid_code"].value_counts()
    grids["households"] = grids["grid_code"].map(counts).fillna(0).astype(int)
    bands = [grid_band(k) for k in grids["kind"]]
    grids["band_min"], grids["band_max"] = [b[0] for b in bands], [b[1] for b in bands]
    grids["in_band"] = (grids["households"] >= grids["band_min"]) & (grids["households"] <= grids["band_max"])
    return grids[["grid_code", "name", "kind", "households", "band_min", "band_max", "in_band", "geometry"]]


def after_grids(engine: Engine, draft: dict) -> gpd.GeoDataFrame:
    """The draft's grids (WGS84) with the stored Chinese ``name`` of kept codes and ``contiguous`` (one piece)."""
    names = dict(before_grids(engine, draft["community_code"])[["grid_code", "name"]].itertuples(index=False))
    grids = draft["grids"].copy()
    grids["name"] = grids["grid_code"].map(names).astype(object)
    grids["name"] = grids["name"].where(grids["name"].notna(), None)  # new grids have no name yet
    grids["contiguous"] = [g is not None and not g.is_empty and len(shapely.get_parts(g)) == 1 for g in grids.geometry]
    return grids.sort_values("grid_code").reset_index(drop=True)
