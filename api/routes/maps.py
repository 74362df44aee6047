"""``GET /maps/{kind}?region=CODE`` — a map of one region as an HTML page, from the PostGIS store.

Kinds: ``coverage`` (网格覆盖图), ``service`` (15分钟服务圈), ``incidents`` (事件热力图, 红黄绿灯),
``links`` (包片联户; needs ``grid`` or ``member``) and ``redraw`` (网格调整对比, computed on request).

Who may see what: the region must lie inside the token's regions (403 otherwise). ``viewer``
tokens get the aggregate maps only (coverage, service); ``redraw`` is for planners and leaders;
``links`` for leaders, dispatchers and responders — a responder only ever gets their own map
(their member and linked households, names shown and the read written to the audit log); everyone
else sees residents' names masked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse

from api.auth import Principal, current_principal, record_pii_read

router = APIRouter(tags=["maps"])

#: Roles allowed per map kind (``admin`` always is).
KIND_ROLES = {
    "coverage": ("leader", "planner", "dispatcher", "responder", "viewer"),
    "service": ("leader", "planner", "dispatcher", "responder", "viewer"),
    "incidents": ("leader", "planner", "dispatcher", "responder"),
    "links": ("leader", "dispatcher", "responder"),
    "redraw": ("leader", "planner"),
}
_LAYERS = {
    "coverage": ("grids", "communities", "streets", "households", "members", "links"),
    "service": ("grids", "communities", "streets", "households", "service_centres"),
    "incidents": ("grids", "communities", "streets", "incidents"),
    "links": ("grids", "households", "members", "links"),
    "redraw": ("grids", "communities", "streets", "households"),
}


@router.get("/maps/{kind}", response_class=HTMLResponse,
            responses={403: {"description": "region or map kind not allowed for this token"},
                       404: {"description": "unknown region, grid or member"},
                       422: {"description": "the map cannot be built from the region's data"}})
def get_map(request: Request,
            kind: Literal["coverage", "service", "links", "incidents", "redraw"],
            region: str = Query(..., min_length=1, max_length=64, description="Street, community or grid code."),
            tiles: Literal["osm", "amap", "tianditu", "none"] = Query("osm", description="Base tiles (amap: GCJ-02 shifted)."),
            grid: str | None = Query(None, min_length=1, max_length=64, description="links: the grid to show."),
            member: str | None = Query(None, min_length=1, max_length=64, description="links: one member's households."),
            at: datetime | None = Query(None, description="incidents: judge 红黄绿灯 at this time (default now)."),
            principal: Principal = Depends(current_principal)) -> HTMLResponse:
    """The ``kind`` map of ``region`` as a self-contained HTML page (Leaflet inlined)."""
    from api.commands.maps import MapOptions, build_map
    from geodata.store.maps import load_region
    from maps.base import MapError, page_html

    principal.require_code(region)
    principal.require_role(*KIND_ROLES[kind])
    engine = request.app.state.engine
    own_map = kind == "links" and principal.role == "responder"
    if own_map:
        if not principal.member_id:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this responder token has no member")
        if member is not None and member != principal.member_id:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a responder sees only their own households")
        member, grid = principal.member_id, None
    if kind == "links" and grid is None and member is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="a links map needs grid or member")
    if grid is not None:
        principal.require_code(grid)
    layers = load_region(engine, region, _LAYERS[kind], with_names=own_map,
                         member_id=member if kind == "links" else None)
    if len(layers["grids"]) == 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no grids in region {region}")
    if kind == "links" and member is not None and len(layers["members"]) == 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no member {member} in region {region}")
    opts = MapOptions(tiles=tiles, grid=grid, member=member, show_names=own_map, at=at,
                      title=None if kind != "coverage" else f"网格覆盖图 {region}")
    try:
        m = build_map(kind, layers, opts)
    except MapError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(e)) from None
    if own_map:
        hh = layers["households"]
        named = hh.loc[hh["name"].notna(), "household_id"] if "name" in hh.columns else []
        record_pii_read(engine, principal, "households", list(named), detail={"via": "GET /maps/links"})
    return HTMLResponse(page_html(m), headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
