"""The leader map's extra layers as GeoJSON for the ``/leader`` page (session login, role ``leader``):

- ``/leader/layers/heat.geojson``: incidents of the page's report-date window and category per H3 cell;
- ``/leader/layers/centres.geojson``: service centres with their straight-line 1,000 m circles;
- ``/leader/layers/sites.geojson``: proposed new sites (maximal covering) with their circles;
- ``/leader/members.json``: the members table of the page (亮晒比拼 figures incl. visits in 30 days).

Region checked on every request (the same 404 for missing and not yours); ``coords=gcj02`` shifts
every coordinate for Amap base maps. No personal data in any layer.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api.auth import Principal, public
from api.web.leader import checked_view, default_region, page_window
from api.web.pages import NOT_FOUND, PageError, PagePrincipal, require_page_role

router = APIRouter(include_in_schema=False)

Region = Annotated[str | None, Query(max_length=64)]
Coords = Annotated[Literal["wgs84", "gcj02"], Query()]


def checked_region(principal: Principal, region: str | None) -> str:
    """The region asked (default: the user's first) if it exists and is the user's; else 404."""
    from geodata.store.stats import region_path

    require_page_role(principal, "leader")
    region = region or default_region(principal)
    if not region or not principal.covers_code(region) or not region_path(principal.engine, region):
        raise PageError(404, NOT_FOUND)
    return region


def _json(body: dict) -> JSONResponse:
    from api.web.render import secure

    return secure(JSONResponse(body))


@router.get("/leader/layers/heat.geojson")
@public
def heat_layer(principal: PagePrincipal, region: Region = None,
               start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
               end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
               category: Annotated[str | None, Query(max_length=64)] = None, coords: Coords = "wgs84"):
    """Incident heat of exactly the page's window and category (counts per H3 cell)."""
    from api.usecases.leader_layers import incident_heat

    code = checked_region(principal, region)
    t0, t1 = page_window(start, end)
    return _json(incident_heat(principal.engine, code, start=t0, end=t1, category=category or None, coords=coords))


@router.get("/leader/layers/centres.geojson")
@public
def centres_layer(principal: PagePrincipal, region: Region = None, coords: Coords = "wgs84"):
    """Service centres with their circles (metres, drawn as real polygons)."""
    from api.usecases.leader_layers import service_centres

    return _json(service_centres(principal.engine, checked_region(principal, region), coords=coords))


@router.get("/leader/layers/sites.geojson")
@public
def sites_layer(principal: PagePrincipal, region: Region = None, coords: Coords = "wgs84"):
    """Proposed new service sites for the region's households outside every circle."""
    from api.usecases.leader_layers import proposed_sites

    return _json(proposed_sites(principal.engine, checked_region(principal, region), coords=coords))


@router.get("/leader/members.json")
@public
def members_json(principal: PagePrincipal, region: Region = None,
                 start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
                 end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
                 category: Annotated[str | None, Query(max_length=64)] = None):
    """The page's members table: households linked, visits in 30 days, incidents handled, rating."""
    t0, t1 = page_window(start, end)
    view = checked_view(principal, region, t0, t1, category)
    return _json({"region": view["region"], "members": view["members"]})
