"""包片联户 routes: recompute a region's links, and a member's households in visiting order.

``POST /links/recompute`` re-links every household of a street, community or grid from the stored
layers (exact optimum, see ``gridmap.linkage``; previous links kept unless a change saves more
than ``keep_bonus_m`` metres) and swaps the region's current run atomically (``geodata.store.links``).

``GET /members/{member_id}/households`` lists a member's current households in visiting order.
Residents' personal data is shown only as the security rules allow (``api.auth.present_pii``):
a responder sees only their own households (unmasked, audited); leaders and dispatchers see those
of members in their regions (unmasked, audited); planners see them masked.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel, Field

from api.auth import Principal, not_found, present_pii, require_roles
from api.usecases import links as uc
from geodata.jsonenc import to_plain
from geodata.store import links as store
from gridmap.contract import MAX_LINKS, MIN_LINKS

router = APIRouter(tags=["links"])

RECOMPUTE_ROLES = ("leader", "planner")
VIEW_ROLES = ("leader", "planner", "dispatcher", "responder")


class RecomputeIn(BaseModel):
    """Which region to re-link and with which rules (policy defaults: 5–10 households per member)."""

    region: str = Field(..., min_length=1, max_length=100, description="Street, community or grid code.")
    min_links: int = Field(MIN_LINKS, ge=0, le=1000, description="Minimum households per member.")
    max_links: int = Field(MAX_LINKS, ge=0, le=1000, description="Maximum households per member.")
    max_distance_m: float | None = Field(None, gt=0, le=100_000, description="Longest link, metres.")
    allow_cross_grid: bool = Field(False, description="Short grids may borrow members of neighbouring grids with room.")
    keep_bonus_m: float = Field(200.0, ge=0, le=100_000,
                                description="Metres a change must save per changed link (stability).")


class GridShortage(BaseModel):
    grid_code: str
    households: int
    unlinked: int
    members: int
    members_needed: int
    nearest_outside: list[dict]


class RecomputeOut(BaseModel):
    """The new current run: headline figures and the grids short of members (no personal data)."""

    run_id: int | None
    region: str
    summary: dict
    shortages: list[GridShortage]
    superseded_links: int = 0


class LinkedHousehold(BaseModel):
    """A linked household (WGS84 position) with its walking distance from the member's home (m)."""

    household_id: str
    grid_code: str | None = None
    size: int | None = None
    tags: list[str] | None = None
    name: str | None = None
    phone: str | None = None
    id_number: str | None = None
    lon: float
    lat: float
    distance_m: float | None = None
    visit_order: int | None = None


def _engine(request: Request):
    return request.app.state.engine


@router.post("/links/recompute", response_model=RecomputeOut)
def recompute(request: Request, body: RecomputeIn,
              principal: Principal = Depends(require_roles(*RECOMPUTE_ROLES))):
    """Re-link the region's households optimally and make the result its current run (one transaction, audited)."""
    if body.max_links < body.min_links:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="max_links must be >= min_links")
    principal.require_code(body.region)
    saved, result = uc.recompute_region(_engine(request), principal, body.region, min_links=body.min_links,
                                        max_links=body.max_links, max_distance_m=body.max_distance_m,
                                        allow_cross_grid=body.allow_cross_grid, keep_bonus_m=body.keep_bonus_m)
    if saved is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no households in region {body.region}")
    short = result.grids[result.grids["unlinked"] > 0].sort_values(["unlinked", "grid_code"], ascending=[False, True])
    shortages = [GridShortage(grid_code=str(r.grid_code), households=int(r.households), unlinked=int(r.unlinked),
                              members=int(r.members), members_needed=int(r.members_needed),
                              nearest_outside=[{k: (str(v) if k in ("member_id", "grid_code") else v)
                                                for k, v in o.items()} for o in r.nearest_outside])
                 for r in short.itertuples()]
    return RecomputeOut(run_id=saved.run_id, region=body.region, summary=to_plain(result.summary),
                        shortages=shortages, superseded_links=saved.superseded_links)


@router.get("/members/{member_id}/households", response_model=list[LinkedHousehold])
def member_households(request: Request, member_id: str = Path(..., max_length=200),
                      principal: Principal = Depends(require_roles(*VIEW_ROLES))):
    """A member's current 包片联户 households in visiting order (personal data masked unless allowed; audited)."""
    engine = _engine(request)
    if principal.role == "responder" and principal.member_id != member_id:
        raise not_found()  # a responder sees only their own households
    exists, grid = store.member_grid(engine, member_id)
    if not exists or not (principal.everywhere or principal.role == "responder" or principal.covers(grid_code=grid)):
        raise not_found()  # a missing member and another region's get the same answer
    rows = store.member_households(engine, member_id)  # tags come as a list (text[]); run_id is not shown
    own = {str(r["household_id"]) for r in rows} if principal.member_id == member_id else None
    return present_pii(engine, principal, "households", rows, "household_id", own_ids=own)

