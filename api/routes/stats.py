"""Incident figures: ``GET /incidents/stats?region=&from=&to=&category=`` (JSON).

Counts by 红黄绿灯 light, category and grid; the KPIs 受理率, 按时办结率, 办结率, 平均响应时长 and
满意率 per street, community, grid and member; and the overdue (red) list with who holds each and for
how long — computed by :func:`api.usecases.leader.incident_stats` (the ``/leader`` page shows the
same). ``from``/``to`` are report dates in China time, both inclusive. The region must lie inside the
caller's regions (the same 404 as an unknown one); ``*`` asks for
the whole city and is open only to callers whose regions are everywhere.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from api.auth import Principal, current_principal
from geodata.jsonenc import dumps_bytes

router = APIRouter(tags=["incidents"])

#: Roles that may read the incident figures (``admin`` always may).
STATS_ROLES = ("leader", "dispatcher", "viewer")


@router.get("/incidents/stats", responses={403: {"description": "role may not read incident figures"},
                                           404: {"description": "region missing or outside your regions"}})
def get_incident_stats(request: Request,
                       region: str = Query(..., min_length=1, max_length=64,
                                           description="Street, community or grid code; * = every region "
                                                       "(only for a caller whose regions are everywhere)."),
                       start: date | None = Query(None, alias="from", description="First report date (China time)."),
                       end: date | None = Query(None, alias="to", description="Last report date (China time), inclusive."),
                       category: str | None = Query(None, max_length=64, description="Only this category."),
                       principal: Principal = Depends(current_principal)) -> dict:
    """Incident counts and KPIs of a region and report-date window (see the module docstring)."""
    from api.usecases.leader import incident_stats

    principal.require_role(*STATS_ROLES)
    principal.require_code(region)
    if start and end and end < start:
        raise HTTPException(422, detail="to: must not be before from")
    body = incident_stats(request.app.state.engine, principal, None if region == "*" else region,
                          at=datetime.now(UTC), start=start, end=end, category=category or None)
    # already plain JSON values: encoded once by orjson, not walked again by FastAPI's encoder (a whole city's
    # 5,000 rows took seconds there)
    return Response(dumps_bytes(body), media_type="application/json")
