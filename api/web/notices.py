"""The dispatchers' notices page (``/notices``, 提醒通知): what the reminder job told the caller's regions —
incidents whose 接单 or 办结 clock turned yellow or red, and red ones escalated (吹哨报到).

Role dispatcher or leader (admin too); every notice is checked against the caller's regions on the
server, and a missing notice and another region's answer the same 404 page. Marking read is a POST
with the session's CSRF token (``api.web.csrf``) and is audited. Times on screen in China time (UTC+8).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse

from api.auth import public
from api.usecases import notices as uc
from api.web.pages import NOT_FOUND, PageError, PagePrincipal
from api.web.render import ROLE_NAMES, render

router = APIRouter(include_in_schema=False)

TITLE = "提醒通知"
DONE_WORDS = {"read": "已标为已读。"}


def _require_role(principal) -> None:
    if not principal.has_role(*uc.NOTICE_ROLES):
        raise PageError(403, f"您的角色（{ROLE_NAMES.get(principal.role, principal.role)}）不能打开这个页面。")


def _notice_id(text: str) -> int:
    """The notice id of the URL; anything but a plain number reads as a missing notice."""
    if not text.isdigit() or len(text) > 18:
        raise PageError(404, NOT_FOUND)
    return int(text)


@router.get("/notices")
@public
def notices_list(request: Request, principal: PagePrincipal, page: int = Query(1, ge=1, le=100_000),
                 done: str | None = Query(None, max_length=10)):
    """The region's notices, unread first, 20 a page."""
    _require_role(principal)
    listing = uc.notices_page(principal.engine, principal, page)
    return render(request, "notices/list.html", page="notices", title=TITLE, listing=listing,
                  done=DONE_WORDS.get(done or ""), region_names=request.state.region_names)


@router.get("/notices/{notice_id}")
@public
def notice_detail(request: Request, principal: PagePrincipal, notice_id: str,
                  done: str | None = Query(None, max_length=10)):
    """One notice with its incident: deadlines, lights now, grid, the incident's steps."""
    _require_role(principal)
    notice = uc.open_notice(principal.engine, principal, _notice_id(notice_id))
    if notice is None:
        raise PageError(404, NOT_FOUND)
    return render(request, "notices/detail.html", page="notices", title=f"{TITLE} · 事件 {notice['incident_id']}",
                  n=notice, done=DONE_WORDS.get(done or ""), region_names=request.state.region_names)


@router.post("/notices/{notice_id}/read")
@public
def notice_read(request: Request, principal: PagePrincipal, notice_id: str,
                back: Annotated[str, Form(max_length=10)] = "detail",
                page: Annotated[int, Form(ge=1, le=100_000)] = 1):
    """标为已读 (CSRF checked by the middleware; audited), then back to the list page or the notice."""
    _require_role(principal)
    nid = _notice_id(notice_id)
    by = f"web:{request.state.session_user.username}"
    if uc.mark_read(principal.engine, principal, nid, by) is None:
        raise PageError(404, NOT_FOUND)
    target = f"/notices?page={page}&done=read" if back == "list" else f"/notices/{nid}?done=read"
    return RedirectResponse(target, status_code=303)
