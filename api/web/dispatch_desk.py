"""The dispatchers' desk (``/dispatch``, 调度台): open incidents of my regions (待派单, 已派单待接单, 处理中)
with both clocks' 红黄绿灯 in words, one incident with its map, steps and proposed responders, and 派单.

Role dispatcher or leader (admin too); the list, the fragment, the detail and the 派单 POST are checked
against the caller's regions on the server, and a missing incident and another region's answer the same
404 page. 派单 is a POST with the session's CSRF token (``api.web.csrf``); a conflict answers 409 with a
Chinese message and writes nothing. Times on screen in China time (UTC+8).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse

from api.auth import public
from api.usecases import dispatch_desk as uc
from api.web.pages import NOT_FOUND, PageError, PagePrincipal
from api.web.render import ROLE_NAMES, render

router = APIRouter(include_in_schema=False)

TITLE = "调度台"
#: Seconds between the list's quiet refreshes (the fragment).
REFRESH_S = 45
FILTER_LIGHTS = {"red": "红灯", "yellow": "黄灯", "green": "绿灯"}

Status = Annotated[str | None, Query(max_length=20)]
Light = Annotated[str | None, Query(max_length=10)]
Category = Annotated[str | None, Query(max_length=100)]
Page = Annotated[int, Query(ge=1, le=100_000)]
Show = Annotated[str | None, Query(max_length=200)]


def _require_role(principal) -> None:
    if not principal.has_role(*uc.DESK_ROLES):
        raise PageError(403, f"您的角色（{ROLE_NAMES.get(principal.role, principal.role)}）不能打开这个页面。")


def _filters(status: str | None, light: str | None, category: str | None) -> dict:
    """The list's filters, anything unknown dropped (an empty select means every value)."""
    return {"status": status if status in dict(uc.GROUPS) else None,
            "light": light if light in FILTER_LIGHTS else None, "category": category or None}


def _listing(principal, status, light, category, page, show=None) -> uc.DeskPage:
    return uc.desk_page(principal.engine, principal, page=page, show=show, **_filters(status, light, category))


def _query(listing: uc.DeskPage, **more) -> str:
    """The list's query string (filters and page), for links, the fragment and the pager."""
    pairs = {k: v for k, v in listing.filters.items() if v} | {k: v for k, v in more.items() if v}
    return urlencode(pairs)


def _context(request: Request, listing: uc.DeskPage, **extra) -> dict:
    return {"page": "dispatch", "title": TITLE, "listing": listing, "light_names": FILTER_LIGHTS,
            "groups": uc.GROUPS, "query": _query(listing), "page_query": lambda n: _query(listing, page=n),
            "refresh_s": REFRESH_S, "region_names": request.state.region_names, **extra}


def _holder(listing: uc.DeskPage, incident_id: str, member_id: str) -> str:
    """Who holds the incident as the list shows it (name beside number, masked as the list is); the
    number from the URL when the incident is not on the page."""
    for _, _, items in listing.groups:
        for item in items:
            if item["incident_id"] == incident_id and item["assigned_member_id"] == member_id:
                return item["holder"]
    return member_id


@router.get("/dispatch")
@public
def desk(request: Request, principal: PagePrincipal, status: Status = None, light: Light = None,
         category: Category = None, page: Page = 1, done: Show = None, incident: Show = None,
         member: Show = None):
    """The desk's list; after 派单 (``done=assigned``) the page holding the incident, with a message."""
    _require_role(principal)
    listing = _listing(principal, status, light, category, page, show=incident if done else None)
    flash = (f"已派单：事件 {incident} 已派给 {_holder(listing, incident, member)}，等待对方接单。"
             if done == "assigned" and incident and member else None)
    return render(request, "dispatch/list.html", **_context(request, listing, flash=flash, just=incident))


@router.get("/dispatch/fragments/list")
@public
def desk_fragment(request: Request, principal: PagePrincipal, status: Status = None, light: Light = None,
                  category: Category = None, page: Page = 1):
    """The list alone (counts, groups, pager) for the page's quiet refresh."""
    _require_role(principal)
    listing = _listing(principal, status, light, category, page)
    return render(request, "dispatch/_list.html", **_context(request, listing, just=None))


@router.get("/dispatch/{incident_id}")
@public
def desk_incident(request: Request, principal: PagePrincipal, incident_id: str):
    """One incident: place on the map, steps, proposed responders with 派单 buttons."""
    _require_role(principal)
    view = uc.incident_detail(principal.engine, principal, incident_id)
    if view is None:
        raise PageError(404, NOT_FOUND)
    return render(request, "dispatch/detail.html", page="dispatch", title=f"{TITLE} · 事件 {view['incident_id']}",
                  inc=view, region_names=request.state.region_names)


@router.post("/dispatch/{incident_id}/assign")
@public
def desk_assign(request: Request, principal: PagePrincipal, incident_id: str,
                member_id: Annotated[str, Form(min_length=1, max_length=200)],
                seen: Annotated[str, Form(max_length=300)] = ""):
    """派单 (CSRF checked by the middleware; audited through ``api.usecases.dispatch.act``): back to the
    list with the incident under 已派单, or a 409 page saying why it was not assigned. The refusal page
    names nobody (no personal-data read), so a refused request leaves every table as it was."""
    _require_role(principal)
    try:
        done = uc.assign(principal.engine, principal, incident_id, member_id, seen)
    except uc.Conflict as e:
        return render(request, "dispatch/conflict.html", status_code=409, page="dispatch", title="未派单",
                      problem=str(e), incident_id=incident_id, region_names=request.state.region_names)
    if done is None:
        raise PageError(404, NOT_FOUND)
    query = urlencode({"done": "assigned", "incident": incident_id, "member": member_id})
    return RedirectResponse(f"/dispatch?{query}", status_code=303)
