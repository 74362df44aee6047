"""Coverage routes: ``GET /coverage?region=CODE`` (figures per grid, community, street) and
``GET /gaps?region=CODE`` (GeoJSON of blank grids, unlinked-household cells and service gaps).

空白网格, 包片联户 coverage and the 15-minute service circle (seeds 001/002), computed on request
from the PostGIS store with :func:`gridmap.coverage.coverage_gaps` (straight-line circle: the store
holds no road network). Links come from the current 包片联户 run; without one they are estimated.
Aggregates only — no resident is named or located individually: unlinked households are returned
as H3 cells with counts. The region must lie inside the token's regions (403 otherwise).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from api.auth import Principal, current_principal
from gridmap.contract import SERVICE_RADIUS_M

router = APIRouter(tags=["coverage"])

#: Roles that may read the aggregate coverage figures (``admin`` always may).
COVERAGE_ROLES = ("leader", "planner", "dispatcher", "responder", "viewer")

Region = Query(..., min_length=1, max_length=64, description="Street, community or grid code.")
Radius = Query(SERVICE_RADIUS_M, gt=0, le=20_000, description="Straight-line service radius, metres "
                                                                 "(centres with their own radius_m keep it).")
GapRes = Query(9, ge=7, le=11, description="H3 resolution of the gap cells (9: ~0.1 km², 10: ~0.015 km²).")


def _compute(request: Request, region: str, principal: Principal, radius_m: float, gap_res: int):
    from geodata.store.coverage import load_coverage_inputs
    from gridmap.coverage import coverage_gaps

    principal.require_code(region)
    principal.require_role(*COVERAGE_ROLES)
    layers = load_coverage_inputs(request.app.state.engine, region)
    grids = layers["grids"]
    if len(grids) == 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no grids in region {region}")
    links = layers.get("links")
    links = links if links is not None and len(links) else None
    out, summary = coverage_gaps(grids, layers["households"], layers["members"], links,
                                 layers["service_centres"], radius_m=radius_m, gap_res=gap_res)
    summary["links_source"] = "current run" if links is not None else "estimated"
    return out, summary


def _clean(v):
    """JSON-safe scalar: NaN → None, numpy → Python."""
    if v is None:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(float(v)) else round(float(v), 2)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


def _records(df: pd.DataFrame, cols) -> list[dict]:
    cols = [c for c in cols if c in df.columns]
    return [{c: _clean(v) for c, v in zip(cols, row)} for row in df[cols].itertuples(index=False, name=None)]


GRID_COLUMNS = ("grid_code", "name", "community_code", "street_code", "kind", "has_branch", "households", "members",
                "linked_households", "unlinked_households", "link_coverage_pct", "members_needed", "size_status",
                "band_min", "band_max", "blank", "blank_reason", "covered_straight")
ROLLUP_COLUMNS = ("grids", "blank_grids", "households", "members", "linked_households", "link_coverage_pct",
                  "members_needed", "covered_straight")


@router.get("/coverage", responses={403: {"description": "region outside the token's regions"},
                                    404: {"description": "no grids in the region"}})
def get_coverage(request: Request, region: str = Region, radius_m: float = Radius,
                 principal: Principal = Depends(current_principal)) -> dict:
    """Coverage figures of a region: the headline summary and one row per grid, community and street.

    Per row: households, members, linked households and link coverage (%), members needed, blank
    grids (空白网格) and households inside the straight-line service circle (``covered_straight``).
    """
    from gridmap.coverage import rollup

    out, summary = _compute(request, region, principal, radius_m, 9)
    st = out["grid_status"]

    def level(by: str, key: str) -> list[dict]:
        if by not in st.columns or st[by].isna().all():
            return []
        r = rollup(st, by).rename(columns={by: key})
        if "covered_straight" in r.columns:
            hh = r["households"].to_numpy(dtype=float)
            with np.errstate(invalid="ignore", divide="ignore"):
                r["within_straight_pct"] = np.where(hh > 0, 100.0 * r["covered_straight"] / hh, np.nan)
        return _records(r, (key,) + ROLLUP_COLUMNS + ("within_straight_pct",))

    return {
        "region": region,
        "radius_m": radius_m,
        "summary": {k: _clean(v) if not isinstance(v, dict) else {a: _clean(b) for a, b in v.items()}
                    for k, v in summary.items()},
        "grids": _records(st, GRID_COLUMNS),
        "communities": level("community_code", "community_code"),
        "streets": level("street_code", "street_code"),
    }


@router.get("/gaps", responses={403: {"description": "region outside the token's regions"},
                                404: {"description": "no grids in the region"}})
def get_gaps(request: Request, region: str = Region, radius_m: float = Radius, gap_res: int = GapRes,
             principal: Principal = Depends(current_principal)) -> dict:
    """Gaps of a region as a GeoJSON FeatureCollection (WGS84).

    Features carry ``layer``: ``blank_grid`` (polygon, with ``blank_reason``), ``gap_cell`` (H3
    cell of households outside every service circle, with ``households``, ``gap_id``,
    ``gap_households``) and ``unlinked_cell`` (H3 cell with the count of households without a
    linked member, by reason). No individual household is returned.
    """
    from shapely.geometry import mapping

    from gridmap.cells import to_unsigned
    from gridmap.coverage import unlinked_cells

    out, summary = _compute(request, region, principal, radius_m, gap_res)
    st = out["grid_status"]
    blank = st[st["blank"]]
    features = []
    for row, geom in zip(_records(blank, ("grid_code", "name", "community_code", "blank_reason", "households",
                                          "members", "has_branch")), blank.geometry):
        features.append({"type": "Feature", "properties": {"layer": "blank_grid", **row}, "geometry": mapping(geom)})
    gaps = out["gap_cells"]
    for row, geom in zip(_records(gaps, ("h3", "households", "gap_id", "gap_households", "basis")), gaps.geometry):
        row["h3"] = format(int(to_unsigned([row["h3"]])[0]), "x")
        features.append({"type": "Feature", "properties": {"layer": "gap_cell", **row},
                         "geometry": mapping(geom)})
    cells = unlinked_cells(out["unlinked_households"], gap_res)
    reasons = [c for c in cells.columns if c not in ("h3", "households", cells.geometry.name)]
    for i, geom in enumerate(cells.geometry):
        by_reason = {r: int(cells[r].iat[i]) for r in reasons if cells[r].iat[i]}
        cell = format(int(to_unsigned([cells["h3"].iat[i]])[0]), "x")
        features.append({"type": "Feature",
                         "properties": {"layer": "unlinked_cell", "h3": cell,
                                        "households": int(cells["households"].iat[i]), "by_reason": by_reason},
                         "geometry": mapping(geom)})
    return {"type": "FeatureCollection", "region": region,
            "summary": {k: _clean(v) if not isinstance(v, dict) else {a: _clean(b) for a, b in v.items()}
                        for k, v in summary.items()},
            "features": features}
