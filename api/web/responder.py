"""The responders' phone page (``/responder``): 在岗/离岗, my incidents (accept, progress notes, close
with a result note and photo), nearby incidents to take (附近事件, 接单), my households (包片联户) in
visiting order with their visit plan, one map marker per building, and the check-in form (签到走访).

Role and region are checked on the server for every request; a household that is missing or not
the caller's answers the same 404. Name and phone of the caller's own households are shown (audited);
the 身份证号 never is. Times on screen in China time (UTC+8).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse

from api.auth import public
from api.usecases import responder as usecase
from api.web.pages import (
    HOME_TITLES,
    NOT_FOUND,
    PageError,
    PagePrincipal,
    require_page_role,
)
from api.web.render import render
from geodata.store import incidents
from geodata.store.visits import FAR_M, VISIT_KINDS, NotLinked
from gridmap.deadlines import CLOCK_LABELS

router = APIRouter(include_in_schema=False)


def visit_plan(request: Request) -> usecase.VisitPlan:
    """The visit frequencies of the app's settings (走访频次)."""
    settings = request.app.state.settings
    return usecase.VisitPlan(settings.visit_every_days, settings.visit_default_days)


@router.get("/responder")
@public
def responder_home(request: Request, principal: PagePrincipal, checked: str | None = None, far: int = 0,
                   done: str | None = None, incident: str | None = None):
    """Responders' home (phone first): duty toggle, my reminders (unread first, 标为已读), my and nearby
    incidents, my households (overdue first) with the building map and check-in. ``done``/``incident``
    name the last action."""
    require_page_role(principal, "responder")
    households = usecase.my_households(principal.engine, principal, visit_plan(request))
    for row in households:
        row["address"] = usecase.address(row)
    buildings = usecase.building_groups(households)
    visited = next((h for h in households if str(h["household_id"]) == checked), None) if checked else None
    mine = [incident_view(r) for r in usecase.my_open_incidents(principal.engine, principal)]
    nearby = [incident_view(r) for r in usecase.nearby_incidents(principal.engine, principal)]
    notices = usecase.my_notices(principal.engine, principal)
    return render(request, "responder/home.html", page="responder", title=HOME_TITLES["responder"],
                  households=households, buildings=buildings, region_names=request.state.region_names,
                  visit_kinds=VISIT_KINDS, checked=visited, far=bool(far), far_m=int(FAR_M),
                  mine=mine, nearby=nearby, on_duty=usecase.is_on_duty(principal.engine, principal),
                  notices=notices, unread=sum(1 for n in notices if n["read_at"] is None),
                  action_notice=ACTION_NOTICES.get(done or "", "").format(incident=incident or ""))


@router.post("/responder/visits")
@public
async def check_in(request: Request, principal: PagePrincipal,
                   household_id: Annotated[str, Form(max_length=200)],
                   kind: Annotated[str, Form(max_length=20)] = "door",
                   note: Annotated[str, Form(max_length=4000)] = "",
                   lon: Annotated[str, Form(max_length=40)] = "", lat: Annotated[str, Form(max_length=40)] = "",
                   coords: Annotated[str, Form(max_length=10)] = "wgs84",
                   accuracy_m: Annotated[str, Form(max_length=40)] = "",
                   photo: Annotated[UploadFile | None, File()] = None):
    """签到走访 from the form: the position fields are filled by the page's script from the phone."""
    require_page_role(principal, "responder")
    settings = request.app.state.settings
    data = await photo.read(settings.photo_max_bytes + 1) if photo is not None and photo.filename else None
    try:
        visit = usecase.check_in(principal.engine, principal, household_id=household_id, kind=kind, note=note,
                                 lon=_number(lon, "经度 lon"), lat=_number(lat, "纬度 lat"), coords=coords,
                                 accuracy_m=_number(accuracy_m, "定位精度 accuracy_m"), photo=data,
                                 upload_dir=settings.upload_dir, photo_max_bytes=settings.photo_max_bytes)
    except NotLinked:
        raise PageError(404, NOT_FOUND) from None
    except usecase.VisitRefused as e:
        raise PageError(400, f"签到未保存：{e}") from None
    target = f"/responder?checked={visit['household_id']}" + ("&far=1" if visit["far"] else "")
    return RedirectResponse(target, status_code=303)


def _number(text: str, field: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise PageError(400, f"签到未保存：{field} 不是数字：{text[:20]!r}") from None


# -- incidents on the page (附近事件, 接单, 我的事件, 在岗/离岗) -----------------------------------------

#: What the page says after an incident action (``?done=…&incident=…``); ids only in the URL.
ACTION_NOTICES = {
    "claim": "接单成功：事件 {incident} 已由您负责，请尽快处置。",
    "taken": "事件 {incident} 已被其他人接单（或已派单），请选择其他事件。",
    "accept": "已接受事件 {incident}。",
    "note": "已记录事件 {incident} 的处置进展。",
    "close": "事件 {incident} 已办结，办结说明已保存。",
    "read": "提醒已标为已读。",
    "on": "已设为在岗：系统会向您派发附近事件。",
    "off": "已设为离岗：暂不向您派发事件。",
}
LIGHT_LABELS = {"green": "绿灯 · 正常", "yellow": "黄灯 · 临期", "red": "红灯 · 超时"}
STATUS_LABELS = {"reported": "待接单", "assigned": "已派给您，待接受", "accepted": "处置中",
                 "closed": "已办结", "rated": "已评价"}


def time_left_text(left) -> str:
    """Time to a deadline in Chinese (``剩 3 小时 20 分`` / ``已超时 2 小时 5 分``); "—" without one."""
    if left is None:
        return "—"
    minutes = int(abs(left.total_seconds()) // 60)
    days, rest = divmod(minutes, 24 * 60)
    text = (f"{days} 天 " if days else "") + f"{rest // 60} 小时 {rest % 60} 分"
    return ("剩 " if left.total_seconds() >= 0 else "已超时 ") + text


def distance_text(metres) -> str:
    """A distance in metres as ``约 60 米`` / ``约 1.2 公里``."""
    if metres is None:
        return ""
    m = float(metres)
    if m < 1:
        return "在本网格内"  # the page measures from the member's grid polygon: 0 m means inside it
    return f"约 {m / 1000:.1f} 公里" if m >= 1000 else f"约 {round(m / 10) * 10:.0f} 米"


def incident_view(row: dict) -> dict:
    """An incident row with the Chinese texts the page shows beside its codes: both clocks' lights
    (接单, 办结) and the time left on the clock running now."""
    running = row.get("clock")
    return {**row, "respond_label": LIGHT_LABELS.get(row.get("respond_light") or "", "无时限"),
            "complete_label": LIGHT_LABELS.get(row.get("complete_light") or "", "无时限"),
            "running_light": row.get(f"{running}_light") if running else None,
            "clock_label": CLOCK_LABELS.get(running or "", ""),
            "status_label": STATUS_LABELS.get(row["status"], row["status"]),
            "left_text": time_left_text(row.get("left")), "distance_text": distance_text(row.get("distance_m"))}


def _back(done: str, incident_id: str = "") -> RedirectResponse:
    query = f"?done={done}" + (f"&incident={quote(incident_id)}" if incident_id else "")
    return RedirectResponse(f"/responder{query}#incidents", status_code=303)


def _incident_action(principal, incident_id: str, action: str, note: str | None = None, photo: bytes | None = None,
                     request: Request | None = None) -> RedirectResponse:
    """Run one incident action for the page; the same 404 page for a missing incident and one not the
    caller's; a refused one (taken, wrong state, bad photo) changes nothing and says why."""
    settings = request.app.state.settings if request is not None else None
    try:
        usecase.act_on_incident(principal.engine, principal, incident_id, action, note, photo=photo,
                                upload_dir=settings.upload_dir if settings else None,
                                photo_max_bytes=settings.photo_max_bytes if settings else None)
    except incidents.NotFound:
        raise PageError(404, NOT_FOUND) from None
    except usecase.IncidentRefused as e:
        if action == "claim":
            return _back("taken", incident_id)
        raise PageError(409, f"未保存：{e}") from None
    return _back(action, incident_id)


@router.post("/responder/incidents/{incident_id}/claim")
@public
def claim_incident(principal: PagePrincipal, incident_id: str):
    """接单 from the 附近事件 list (atomic: when someone was faster the page says so)."""
    require_page_role(principal, "responder")
    return _incident_action(principal, incident_id, "claim")


@router.post("/responder/incidents/{incident_id}/accept")
@public
def accept_incident(principal: PagePrincipal, incident_id: str):
    """接受 an incident a dispatcher assigned to me."""
    require_page_role(principal, "responder")
    return _incident_action(principal, incident_id, "accept")


@router.post("/responder/incidents/{incident_id}/note")
@public
def note_incident(principal: PagePrincipal, incident_id: str, note: Annotated[str, Form(min_length=1, max_length=2000)]):
    """处置进展: a progress note on my accepted incident."""
    require_page_role(principal, "responder")
    return _incident_action(principal, incident_id, "note", note.strip() or None)


@router.post("/responder/incidents/{incident_id}/close")
@public
async def close_incident(request: Request, principal: PagePrincipal, incident_id: str,
                         note: Annotated[str, Form(max_length=2000)] = "",
                         photo: Annotated[UploadFile | None, File()] = None):
    """办结: close my incident with a result note (required) and an optional photo."""
    require_page_role(principal, "responder")
    settings = request.app.state.settings
    data = await photo.read(settings.photo_max_bytes + 1) if photo is not None and photo.filename else None
    return _incident_action(principal, incident_id, "close", note, photo=data, request=request)


@router.post("/responder/duty")
@public
def set_duty(principal: PagePrincipal, available: Annotated[str, Form(max_length=5)]):
    """在岗/离岗 toggle (``available`` = 1 or 0)."""
    require_page_role(principal, "responder")
    if available not in ("1", "0"):
        raise PageError(400, "未保存：available 只能是 1（在岗）或 0（离岗）")
    try:
        on = usecase.set_on_duty(principal.engine, principal, available == "1")
    except incidents.NotFound:
        raise PageError(404, NOT_FOUND) from None
    return _back("on" if on else "off")


@router.post("/responder/notices/{notice_id}/read")
@public
def notice_read(principal: PagePrincipal, notice_id: str):
    """标为已读 one of my reminders (CSRF checked by the middleware; audited); a missing notice and another
    member's answer the same 404 page."""
    require_page_role(principal, "responder")
    if not notice_id.isdigit() or len(notice_id) > 18:
        raise PageError(404, NOT_FOUND)
    if usecase.mark_my_notice_read(principal.engine, principal, int(notice_id)) is None:
        raise PageError(404, NOT_FOUND)
    return RedirectResponse("/responder?done=read#notices", status_code=303)
