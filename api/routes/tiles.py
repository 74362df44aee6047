"""Live-map routes: vector tiles ``GET /tiles/{layer}/{z}/{x}/{y}.mvt`` and click details
``GET /features/{layer}/{id}``.

Tiles come straight from PostGIS (:mod:`geodata.store.tiles`), filtered to the caller's regions: a tile
outside every region of the token is empty (204), never another region's data. No tile carries a name,
phone or ID number for any role; callers without personal-data rights get k-anonymous H3 aggregates
instead of household and member points. ``?coords=gcj02`` shifts every feature to GCJ-02 for Amap base
maps. Tiles carry a strong ``ETag`` (the datum is part of it) and
``Cache-Control: private, max-age=60`` and answer 304 to a matching ``If-None-Match``.

Details of one feature mask residents' personal data unless role and region allow it (unmasked reads
are audited); a feature that does not exist and one outside the caller's regions get the same 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import (
    APIRouter,
    Depends,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    status,
)
from starlette.concurrency import run_in_threadpool

from api.auth import Principal, current_principal_async, hot_reader, present_pii, resolve_scope
from geodata.store import tiles as store
from gridmap.dispatch import CLOSED, RATED, light
from gridmap.privacy import PII_ROLES, mask_record

router = APIRouter(tags=["map"])

#: Seconds a browser may reuse a tile without asking again (then it revalidates with the ETag).
TILE_MAX_AGE_S = 60
MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
NOT_FOUND = "no such feature"
Caller = Annotated[Principal, Depends(current_principal_async)]

Layer = Annotated[str, Path(description="One of: " + ", ".join(store.LAYERS))]
Zoom = Annotated[int, Path(ge=0, le=store.MAX_ZOOM, description="Zoom level, 0–22.")]
Col = Annotated[int, Path(ge=0, description="Tile column, 0 ≤ x < 2^z.")]
Row = Annotated[int, Path(ge=0, description="Tile row, 0 ≤ y < 2^z (XYZ scheme, north at 0).")]
FeatureId = Annotated[str, Path(min_length=1, max_length=100)]
Coords = Annotated[str, Query(pattern="^(wgs84|gcj02)$",
                              description="wgs84 (as stored) or gcj02: every vertex shifted for Amap base maps.")]


def _tile_headers(tag: str) -> dict[str, str]:
    # "private": tiles depend on the caller's role and regions, so shared caches must not keep them.
    return {"ETag": tag, "Cache-Control": f"private, max-age={TILE_MAX_AGE_S}", "Vary": "Authorization, Cookie"}


@router.get("/tiles/{layer}/{z}/{x}/{y}.mvt", response_class=Response,
            responses={200: {"content": {MVT_MEDIA_TYPE: {}}, "description": "a Mapbox Vector Tile"},
                       204: {"description": "nothing in this tile for this caller"},
                       304: {"description": "unchanged since the ETag in If-None-Match"},
                       404: {"description": "unknown layer or a tile outside the pyramid"}})
async def get_tile(request: Request, layer: Layer, z: Zoom, x: Col, y: Row, principal: Caller,
                   coords: Coords = "wgs84") -> Response:
    """One vector tile of ``layer`` (Web Mercator XYZ; features in tile coordinates, extent 4096).

    Layers: ``grids`` (code, name, community, status, households, members, link coverage %, blank
    reason), ``households`` (H3 cells with counts; points from zoom 16 for roles allowed personal data),
    ``members`` (H3 cells; home points from zoom 14 for roles allowed personal data), ``centres``,
    ``incidents`` (category, status, 红黄绿灯 light) and ``gaps`` (H3 cells: households, unlinked, outside
    the 1,000 m service circle). Cells with fewer than 5 households are left out for other roles.
    With ``?coords=gcj02`` (Amap base maps) the tile address and every feature are in GCJ-02.
    """
    if layer not in store.LAYERS or not store.tile_exists(z, x, y):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such tile")
    # Hot path (issue 19): caller and regions resolved in the event loop, one thread-pool hop for the render.
    await resolve_scope(principal, hot_reader(request))
    body = await run_in_threadpool(
        store.render_tile, request.app.state.engine, layer, z, x, y, grid_codes=principal.grid_codes(),
        community_codes=principal.community_codes(),
        street_codes=None if principal.everywhere else principal.scope().streets,
        pii=principal.role in PII_ROLES, coords=coords)
    if not body:
        return Response(status_code=status.HTTP_204_NO_CONTENT,
                        headers={"Cache-Control": f"private, max-age={TILE_MAX_AGE_S}"})
    tag = store.etag(body, coords)
    if tag in _etags(request.headers.get("if-none-match")):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=_tile_headers(tag))
    return Response(content=body, media_type=MVT_MEDIA_TYPE, headers=_tile_headers(tag))


def _etags(header: str | None) -> set[str]:
    """The entity tags of an If-None-Match header (weak ``W/`` prefixes dropped, as RFC 9110 compares weakly)."""
    if not header:
        return set()
    return {t.strip().removeprefix("W/") for t in header.split(",")}


@router.get("/features/{layer}/{feature_id}",
            responses={404: {"description": "no such feature, or outside the token's regions (the same answer)"}})
def get_feature(request: Request, layer: Layer, feature_id: FeatureId, principal: Caller) -> dict:
    """Details of one map feature clicked on: a grid (with its counts and link coverage %), household,
    member, centre or incident (with its 红黄绿灯 light now). Coordinates are WGS84 degrees.

    Residents' and members' names and phones are masked unless the role may see personal data in that
    region (unmasked reads are audited); callers without that right see no household or member location.
    """
    engine = request.app.state.engine
    row = store.feature_details(engine, layer, feature_id)
    if row is None or not principal.covers(row.get("grid_code"), row.get("community_code"), row.get("street_code")):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND)
    if layer in ("households", "members"):
        return _person_details(engine, principal, layer, row)
    if layer == "incidents":
        return _incident_details(row)
    return row


def _person_details(engine, principal: Principal, layer: str, row: dict) -> dict:
    if not principal.allows_pii(grid_code=row.get("grid_code")):
        # a location is personal data too: only aggregates reach these roles
        out = mask_record(row)
        out.pop("lon", None), out.pop("lat", None)
        return out
    return present_pii(engine, principal, layer, [row], "id")[0]


def _incident_details(row: dict) -> dict:
    closed = row["status"] in (CLOSED, RATED)
    if row["deadline_at"] is None or (closed and row["closed_at"] is None):
        row["light"] = None
    else:
        row["light"] = light(row["reported_at"], row["deadline_at"], datetime.now(UTC), row["closed_at"])
    return row
