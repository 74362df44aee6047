"""Needs and flagged incidents as JSON: a responder's nearby needs (需求清单) and low-rated incidents (差评).

- ``GET /needs/nearby?member_id=``: open 求助服务 needs the member can meet (their skill, within the
  service radius in metres). A responder sees only their own list; a dispatcher or leader may ask for
  a member of their regions. Another member, another region's member and a missing member all get
  the same 404.
- ``GET /incidents/flagged?region=``: incidents residents rated low in a street, community or grid
  code of the caller's regions (dispatcher, leader); a region outside theirs is the 404 of a missing one.
- ``GET /pioneers/map.geojson`` (public, no token): the 先锋地图 — members' service posts and the
  grids they serve, never a home point; a member's name only where they chose to show it.
Coordinates WGS84 degrees; distances metres.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.auth import Principal, not_found, public, require_roles
from api.usecases import needs as uc
from geodata.store.incidents import NotFound
from gridmap.contract import SERVICE_RADIUS_M

router = APIRouter(tags=["needs"])

FLAG_ROLES = ("dispatcher", "leader")
NearbyCaller = Annotated[Principal, Depends(require_roles("responder", *FLAG_ROLES))]
FlagCaller = Annotated[Principal, Depends(require_roles(*FLAG_ROLES))]


class NearbyNeed(BaseModel):
    """An open need (需求点单) a member can meet, ``distance_m`` metres from them (great circle)."""

    incident_id: str
    category: str
    required_skill: str | None
    status: str
    reported_at: datetime
    deadline_at: datetime | None
    grid_code: str | None
    description: str | None
    address: str | None
    lon: float
    lat: float
    distance_m: float


class FlaggedIncident(BaseModel):
    """An incident a resident rated low (1–2 stars), for the leader's follow-up."""

    incident_id: str
    category: str
    required_skill: str | None
    status: str
    grid_code: str | None
    community_code: str | None
    street_code: str | None
    assigned_member_id: str | None
    rating: int | None
    rating_comment: str | None
    description: str | None
    reported_at: datetime
    closed_at: datetime | None
    rated_at: datetime | None
    lon: float
    lat: float


def _member_of_scope(principal: Principal, member_id: str) -> None:
    """404 unless the caller may see ``member_id``'s list: their own, or (dispatcher/leader) a member of their regions."""
    if member_id == principal.member_id:
        return
    if not principal.has_role(*FLAG_ROLES):
        raise not_found()
    from geodata.store.links import member_grid

    exists, grid = member_grid(principal.engine, member_id)
    if not (exists and principal.covers(grid_code=grid)):
        raise not_found()


@router.get("/needs/nearby", response_model=list[NearbyNeed])
def nearby(request: Request, principal: NearbyCaller,
           member_id: str = Query(..., min_length=1, max_length=200, description="The member (党员)."),
           radius_m: float = Query(SERVICE_RADIUS_M, gt=0, le=5000, description="Service radius, metres.")):
    """Open needs (求助服务) this member can meet, nearest first: their skill (or none named), within ``radius_m``."""
    _member_of_scope(principal, member_id)
    try:
        return uc.nearby_needs(request.app.state.engine, member_id, radius_m=radius_m)
    except NotFound:
        raise not_found() from None


@router.get("/incidents/flagged", response_model=list[FlaggedIncident])
def flagged(request: Request, principal: FlagCaller,
            region: str = Query(..., min_length=1, max_length=200, description="Street, community or grid code.")):
    """Incidents of ``region`` rated low by residents (差评), most recently rated first."""
    principal.require_code(region)
    return uc.flagged(request.app.state.engine, region)


@router.get("/pioneers/map.geojson", responses={200: {"content": {"application/geo+json": {}}}})
@public
def pioneers_map(request: Request) -> JSONResponse:
    """先锋地图 (public): a GeoJSON FeatureCollection (WGS84) of service posts (``layer: post``: kind, title,
    skills, grid, the member's name only where shown by choice) and the grids they serve (``layer: grid``)."""
    return JSONResponse(uc.pioneers_map(request.app.state.engine), media_type="application/geo+json",
                        headers={"Cache-Control": "public, max-age=300"})
