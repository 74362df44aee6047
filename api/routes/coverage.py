"""Coverage routes: ``GET /coverage?region=CODE`` (figures per grid, community, street) and
``GET /gaps?region=CODE`` (GeoJSON of blank grids, unlinked-household cells and service gaps).

空白网格, 包片联户 coverage and the 15-minute service circle (seeds 001/002), computed on request
from the PostGIS store with :func:`gridmap.coverage.coverage_gaps` (straight-line circle: the store
holds no road network). Links come from the current 包片联户 run; without one they are estimated.
Aggregates only — no resident is named or located individually: unlinked households are returned
as H3 cells with counts. For roles without personal-data rights (planners, viewers) the cells are
at most ``gap_max_resolution_masked`` fine and hold at least ``gap_min_households`` (k) households
each: smaller cells are merged with their siblings into the parent cell, and what is still under k
at resolution 7 is left out (counted in ``summary.suppressed_households``). The region must lie
inside the token's regions (403 otherwise).
"""

from __future__ import annotations

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from api.auth import Principal, current_principal
from geodata.jsonenc import to_plain
from gridmap.contract import SERVICE_RADIUS_M
from gridmap.privacy import PII_ROLES

router = APIRouter(tags=["coverage"])

#: Roles that may read the aggregate coverage figures (``admin`` always may).
COVERAGE_ROLES = ("leader", "planner", "dispatcher", "responder", "viewer")

Region = Query(..., min_length=1, max_length=64, description="Street, community or grid code.")
Radius = Query(SERVICE_RADIUS_M, gt=0, le=20_000, description="Straight-line service radius, metres "
                                                                 "(centres with their own radius_m keep it).")
GapRes = Query(9, ge=7, le=11, description="H3 resolution of the gap cells (9: ~0.1 km², 10: ~0.015 km²); "
                                          "capped for roles without personal-data rights.")
#: Coarsest resolution k-anonymous merging goes up to (~5 km² cells).
COARSEST_RES = 7


def _compute(request: Request, region: str, principal: Principal, radius_m: float, gap_res: int):
    from api.usecases.leader import RegionNotFound, coverage_layers

    principal.require_code(region)
    principal.require_role(*COVERAGE_ROLES)
    try:
        return coverage_layers(request.app.state.engine, region, radius_m, gap_res)
    except RegionNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no grids in region {region}") from None


def _records(df: pd.DataFrame, cols) -> list[dict]:
    """Rows as JSON-safe dicts (NaN → None, numpy → Python, floats to 2 decimals)."""
    cols = [c for c in cols if c in df.columns]
    return to_plain(pd.DataFrame(df[cols]).to_dict("records"), ndigits=2)


@router.get("/coverage", responses={403: {"description": "region outside the token's regions"},
                                    404: {"description": "no grids in the region"}})
def get_coverage(request: Request, region: str = Region, radius_m: float = Radius,
                 principal: Principal = Depends(current_principal)) -> dict:
    """Coverage figures of a region: the headline summary and one row per grid, community and street.

    Per row: households, members, linked households and link coverage (%), members needed, blank
    grids (空白网格) and households inside the straight-line service circle (``covered_straight``).
    The summary adds the policy figures the leaders' page shows (grids with a branch, grids in
    band, grid workers against 1 per 300 households): :func:`api.usecases.leader.coverage_report`.
    """
    from api.usecases.leader import RegionNotFound, coverage_report

    principal.require_code(region)
    principal.require_role(*COVERAGE_ROLES)
    try:
        return coverage_report(request.app.state.engine, region, radius_m)
    except RegionNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no grids in region {region}") from None


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

    from gridmap.coverage import unlinked_cells

    settings = request.app.state.settings
    masked = principal.role not in PII_ROLES
    if masked:
        gap_res = min(gap_res, settings.gap_max_resolution_masked)
    out, summary = _compute(request, region, principal, radius_m, gap_res)
    st = out["grid_status"]
    blank = st[st["blank"]]
    features = []
    for row, geom in zip(_records(blank, ("grid_code", "name", "community_code", "blank_reason", "households",
                                          "members", "has_branch")), blank.geometry):
        features.append({"type": "Feature", "properties": {"layer": "blank_grid", **row}, "geometry": mapping(geom)})
    gaps = out["gap_cells"]
    gap_rows = _records(gaps, ("h3", "households", "gap_id", "gap_households", "basis"))
    cells = unlinked_cells(out["unlinked_households"], gap_res)
    reasons = [c for c in cells.columns if c not in ("h3", "households", cells.geometry.name)]
    unlinked_rows = [{"h3": int(cells["h3"].iat[i]), "households": int(cells["households"].iat[i]),
                      "by_reason": {r: int(cells[r].iat[i]) for r in reasons if cells[r].iat[i]}}
                     for i in range(len(cells))]
    if masked:
        k = settings.gap_min_households
        gap_rows, hidden_gaps = k_anonymous_cells(gap_rows, k, keep=("basis",))
        unlinked_rows, hidden_unlinked = k_anonymous_cells(unlinked_rows, k)
        summary = {**summary, "min_households_per_cell": k,
                   "suppressed_households": {"gap_cell": hidden_gaps, "unlinked_cell": hidden_unlinked}}
    features += [_cell_feature("gap_cell", row) for row in gap_rows]
    features += [_cell_feature("unlinked_cell", row) for row in unlinked_rows]
    return {"type": "FeatureCollection", "region": region, "gap_res": gap_res,
            "summary": to_plain(summary, ndigits=2),
            "features": features}


def _cell_feature(layer: str, row: dict) -> dict:
    """A GeoJSON feature of one H3 cell (``row["h3"]``, signed int64) with the row as properties (h3 as hex)."""
    from shapely.geometry import mapping

    from gridmap.cells import cell_polygon, to_unsigned

    cell = int(to_unsigned([row["h3"]])[0])
    return {"type": "Feature", "properties": {"layer": layer, **row, "h3": format(cell, "x")},
            "geometry": mapping(cell_polygon(cell))}


def k_anonymous_cells(rows: list[dict], k: int, keep: tuple[str, ...] = ()) -> tuple[list[dict], int]:
    """Cells that each hold at least ``k`` households: a cell under ``k`` is merged with all its
    siblings into their parent cell, level by level up to resolution :data:`COARSEST_RES`; what is
    still under ``k`` there is left out.

    Parameters
    ----------
    rows : list of dict
        ``h3`` (signed int64 cell), ``households`` and optionally ``by_reason`` (counts, summed on
        merging) and the ``keep`` keys (the first row's value is kept).

    Returns
    -------
    (rows, suppressed) : the merged rows and the number of households left out.
    """
    import h3

    from gridmap.cells import to_signed, to_unsigned

    cells = {format(int(to_unsigned([r["h3"]])[0]), "x"): r for r in rows}
    for res in range(max((h3.get_resolution(c) for c in cells), default=COARSEST_RES), COARSEST_RES, -1):
        families: dict[str, list[str]] = {}
        for c in cells:
            if h3.get_resolution(c) == res:
                families.setdefault(h3.cell_to_parent(c, res - 1), []).append(c)
        for parent, children in families.items():
            if any(cells[c]["households"] < k for c in children):
                merged = _merge([cells.pop(c) for c in children] + ([cells.pop(parent)] if parent in cells else []),
                                keep)
                cells[parent] = {**merged, "h3": int(to_signed([int(parent, 16)])[0])}
    shown = [r for r in cells.values() if r["households"] >= k]
    return shown, sum(r["households"] for r in cells.values() if r["households"] < k)


def _merge(rows: list[dict], keep: tuple[str, ...]) -> dict:
    out = {"households": sum(r["households"] for r in rows), **{key: rows[0].get(key) for key in keep}}
    if any("by_reason" in r for r in rows):
        reasons: dict[str, int] = {}
        for r in rows:
            for reason, n in r.get("by_reason", {}).items():
                reasons[reason] = reasons.get(reason, 0) + n
        out["by_reason"] = reasons
    return out
