"""``GET /maps/{kind}?region=CODE`` — a map of one region as an HTML page, from the PostGIS store.

Kinds: ``coverage`` (网格覆盖图), ``service`` (15分钟服务圈), ``incidents`` (事件热力图, 红黄绿灯),
``links`` (包片联户; needs ``grid`` or ``member``; only saved links are drawn — 409 when the region
has none) and ``redraw`` (网格调整对比 of a saved draft, ``draft=<id>``; 409 without one — no engine
runs inside a GET).

Who may see what: the region must lie inside the token's regions (403 otherwise). ``viewer``
tokens get the aggregate maps only (coverage, service); ``redraw`` is for planners and leaders;
``links`` for leaders, dispatchers and responders — a responder only ever gets their own map
(their member and linked households, names shown and the read written to the audit log); everyone
else sees residents' names masked.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse

from api.auth import Principal, current_principal, not_found, record_pii_read
from api.usecases.drafts import DraftMissing, open_draft
from api.usecases.maps import MAP_ROLES, MapOptions, NoSavedDraft, NoSavedLinks, RegionNotFound, region_map

router = APIRouter(tags=["maps"])


def _links_subject(principal: Principal, grid: str | None, member: str | None) -> tuple[str | None, str | None]:
    """The ``(grid, member)`` a links map shows: a responder only ever gets their own member."""
    if principal.role != "responder":
        return grid, member
    if not principal.member_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this responder token has no member")
    if member is not None and member != principal.member_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a responder sees only their own households")
    return None, principal.member_id


@router.get("/maps/{kind}", response_class=HTMLResponse,
            responses={403: {"description": "region or map kind not allowed for this token"},
                       404: {"description": "unknown region, grid or member"},
                       409: {"description": "links map: no saved 包片联户 run for this region"},
                       422: {"description": "the map cannot be built from the region's data"}})
def get_map(request: Request,
            kind: Literal["coverage", "service", "links", "incidents", "redraw"],
            region: str = Query(..., min_length=1, max_length=64, description="Street, community or grid code."),
            tiles: Literal["osm", "amap", "tianditu", "none"] = Query("osm", description="Base tiles (amap: GCJ-02 shifted)."),
            grid: str | None = Query(None, min_length=1, max_length=64, description="links: the grid to show."),
            member: str | None = Query(None, min_length=1, max_length=64, description="links: one member's households."),
            at: datetime | None = Query(None, description="incidents: judge 红黄绿灯 at this time (default now)."),
            draft: int | None = Query(None, description="redraw: the saved draft to draw (409 without one)."),
            principal: Principal = Depends(current_principal)) -> HTMLResponse:
    """The ``kind`` map of ``region`` as a self-contained HTML page (Leaflet inlined)."""
    from api.settings import get_settings
    from maps.base import MapError

    principal.require_code(region)
    principal.require_role(*MAP_ROLES[kind])
    own_map = kind == "links" and principal.role == "responder"
    if kind == "links":
        grid, member = _links_subject(principal, grid, member)
        if grid is None and member is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="a links map needs grid or member")
    if grid is not None:
        principal.require_code(grid)
    opts = MapOptions(tiles=tiles, grid=grid, member=member, show_names=own_map, at=at,
                      title=None if kind != "coverage" else f"网格覆盖图 {region}",
                      tianditu_key=get_settings().tianditu_key)
    engine = request.app.state.engine
    if kind == "redraw" and draft is not None:
        try:
            opts = replace(opts, draft=open_draft(engine, draft, principal.community_codes()))
        except DraftMissing:
            raise not_found() from None
    try:
        drawn = region_map(engine, kind, region, opts)
    except RegionNotFound:
        raise not_found() from None
    except (NoSavedLinks, NoSavedDraft) as e:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(e)) from None
    except MapError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(e)) from None
    if own_map:
        record_pii_read(engine, principal, "households", drawn.named_household_ids, detail={"via": "GET /maps/links"})
    return HTMLResponse(drawn.html, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
