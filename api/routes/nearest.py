"""The hot read of dispatch: ``GET /responders/nearest`` in the event loop (issue 19).

The same path, parameters, checks and answer as before it moved out of ``api/routes/dispatch.py``;
what changed is how: an async route over the psycopg pool of :mod:`geodata.store.pool` (prepared
statements, autocommit), the caller resolved without a thread-pool hop
(:func:`api.auth.caller`), the query string validated by one pydantic model instead of FastAPI's
per-parameter solving (:class:`NearestQuery`; the same 422s), and the answer's JSON array written by
PostgreSQL in the query itself (:func:`geodata.store.pool.nearest_responders_json`) instead of rows
decoded, sorted and encoded here or passed through the response model (which stays declared for the
OpenAPI document, as do the parameters).

Coordinates WGS84 degrees; distances metres on the sphere.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import caller, hot_reader, resolve_scope
from api.hotpath import VALIDATION_ERROR, HotRoute, parse_query, query_parameters
from geodata.store import pool as hot

#: Served without per-request dependency solving (:class:`api.hotpath.HotRoute`): the endpoint checks its caller.
router = APIRouter(tags=["dispatch"], route_class=HotRoute)

NEAREST_ROLES = ("dispatcher", "leader", "responder")


class NearestQuery(BaseModel):
    """The query string of ``/responders/nearest`` (WGS84 degrees, metres)."""

    model_config = ConfigDict(extra="ignore")

    lon: float = Field(..., ge=-180, le=180, description="Longitude, WGS84 degrees.")
    lat: float = Field(..., ge=-90, le=90, description="Latitude, WGS84 degrees.")
    k: int = Field(5, ge=1, le=100, description="How many responders at most.")
    skill: str | None = Field(None, max_length=50, description="Only responders with this skill tag.")
    radius_m: float | None = Field(None, gt=0, le=100_000, description="Only within this many metres.")


class Responder(BaseModel):
    """An available responder (党员 / 网格员) and their great-circle distance in metres."""

    member_id: str
    kind: str
    grid_code: str | None
    skills: list[str] | None
    lon: float
    lat: float
    distance_m: float


RESPONDER_FIELDS = tuple(Responder.model_fields)


@router.get("/responders/nearest", response_model=list[Responder], responses={422: VALIDATION_ERROR},
            openapi_extra={"parameters": query_parameters(NearestQuery)})
async def nearest(request: Request):
    """Available responders (members and grid workers) nearest to a WGS84 point, in metres on the
    sphere (PostGIS KNN on an n-D index of points on the sphere): the same ranking as brute-force haversine, ties by id.
    Roles: dispatcher, leader, responder (and admin)."""
    # The caller first, as the app-wide gate did (401), then the parameters (422), then the role (403):
    # the same answers in the same order, with no dependency for FastAPI to solve per request (issue 19).
    principal = await caller(request)
    # Parameters from one model, not FastAPI arguments: FastAPI's solving of five query parameters
    # cost more CPU than the KNN query's client side (issue 19).
    q = parse_query(request, NearestQuery)
    principal.require_role(*NEAREST_ROLES)
    reader = hot_reader(request)
    # A regional token sees responders of its own grids only (security review, api.auth).
    await resolve_scope(principal, reader)
    pool = None if principal.everywhere else sorted(principal.grid_codes() or ())
    # The JSON array comes written by PostgreSQL (geodata.store.pool.nearest_responders_json): no rows
    # to decode, sort and encode in this process (issue 19).
    body = await hot.nearest_responders_json(reader, q.lon, q.lat, RESPONDER_FIELDS, k=q.k, skill=q.skill,
                                             radius_m=q.radius_m, pool=pool)
    return Response(body, media_type="application/json")
