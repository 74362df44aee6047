"""The hot read of dispatch: ``GET /responders/nearest`` in the event loop (issue 19).

The same path, parameters, checks and answer as before it moved out of ``api/routes/dispatch.py``;
what changed is how: an async route over the psycopg pool of :mod:`geodata.store.pool` (prepared
statements, autocommit), the caller resolved without a thread-pool hop
(:func:`api.auth.current_principal_async`), and the answer written with orjson straight from the
rows instead of through the response model (which stays declared for the OpenAPI document).

Coordinates WGS84 degrees; distances metres on the sphere.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from api.auth import caller, hot_reader, resolve_scope
from geodata.store import pool as hot

router = APIRouter(tags=["dispatch"])

NEAREST_ROLES = ("dispatcher", "leader", "responder")

Lon = Query(..., ge=-180, le=180, description="Longitude, WGS84 degrees.")
Lat = Query(..., ge=-90, le=90, description="Latitude, WGS84 degrees.")


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


def json_rows(rows: list[dict], fields: tuple[str, ...]) -> Response:
    """A JSON array of ``rows`` cut to ``fields`` (in that order), written by orjson."""
    return Response(orjson.dumps([{f: r[f] for f in fields} for r in rows]), media_type="application/json")


@router.get("/responders/nearest", response_model=list[Responder])
async def nearest(request: Request, lon: float = Lon, lat: float = Lat,
                  k: int = Query(5, ge=1, le=100, description="How many responders at most."),
                  skill: str | None = Query(None, max_length=50, description="Only responders with this skill tag."),
                  radius_m: float | None = Query(None, gt=0, le=100_000, description="Only within this many metres.")):
    """Available responders (members and grid workers) nearest to a WGS84 point, in metres on the
    sphere (PostGIS KNN on geography): the same ranking as brute-force haversine, ties by id.
    Roles: dispatcher, leader, responder (and admin)."""
    # The caller from the app-wide gate, not a dependency: each one FastAPI solves costs about as
    # much as the KNN query's client side (issue 19).
    principal = await caller(request, *NEAREST_ROLES)
    reader = hot_reader(request)
    # A regional token sees responders of its own grids only (security review, api.auth).
    await resolve_scope(principal, reader)
    pool = None if principal.everywhere else sorted(principal.grid_codes())
    rows = await hot.nearest_responders(reader, lon, lat, k=k, skill=skill, radius_m=radius_m, pool=pool)
    return json_rows(rows, RESPONDER_FIELDS)
