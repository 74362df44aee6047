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

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy.engine import Engine

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


def create_draft(engine: Engine, community_code: str, controls: DraftControls, *, name: str, created_by: str) -> int:
    """Compute and save a draft of ``community_code``; returns its id."""
    inputs = store.community_inputs(engine, community_code)
    if len(inputs["communities"]) == 0:
        raise DraftMissing(community_code)
    versions = scope_versions(engine, [community_code])
    grids, assignment = compute_draft(inputs, controls)
    today = dict(zip(inputs["households"]["household_id"], inputs["households"]["grid_code"]))
    summary = draft_figures(grids, assignment, today)
    params = {"locked": sorted(controls.locked), "band": list(controls.band) if controls.band else None,
              "minimal_change": controls.minimal_change, "seed": controls.seed}
    return store.save_draft(engine, community_code=community_code, name=name, created_by=created_by, params=params,
                            versions=versions, grids=grids, assignment=assignment, summary=summary)


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


def commit_draft(engine: Engine, draft: dict, actor: Actor, authorise=None, *, allow_out_of_band: bool = False):
    """Apply a draft through ``commit_redraw`` (version checks, band and contiguity rules, audit).

    Raises ``geodata.store.grids.EditRefused`` (reason ``stale``, ``out_of_band``, ``non_contiguous``);
    nothing is written then.
    """
    grids = draft["grids"][["grid_code", "community_code", "kind", "geometry"]].copy()
    grids["grid_code"] = grids["grid_code"].where(grids["grid_code"].notna(), None)
    done = commit_redraw(engine, grids, versions=draft["versions"], authorise=authorise, actor=actor,
                         allow_out_of_band=allow_out_of_band)
    store.mark_committed(engine, draft["draft_id"])
    return done
