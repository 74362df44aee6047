"""The responders' phone page (``/responder``): my households (包片联户) in visiting order with their
visit plan, one map marker per building, and the check-in form (签到走访).

Role and region are checked on the server for every request; a household that is missing or not
the caller's answers the same 404. Name and phone of the caller's own households are shown (audited);
the 身份证号 never is. Times on screen in China time (UTC+8).
"""

from __future__ import annotations

from typing import Annotated

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
from geodata.store.visits import FAR_M, VISIT_KINDS, NotLinked

router = APIRouter(include_in_schema=False)


def visit_plan(request: Request) -> usecase.VisitPlan:
    """The visit frequencies of the app's settings (走访频次)."""
    settings = request.app.state.settings
    return usecase.VisitPlan(settings.visit_every_days, settings.visit_default_days)


@router.get("/responder")
@public
def responder_home(request: Request, principal: PagePrincipal, checked: str | None = None, far: int = 0):
    """Responders' home (phone first): my households, overdue first, with the building map and check-in."""
    require_page_role(principal, "responder")
    households = usecase.my_households(principal.engine, principal, visit_plan(request))
    for row in households:
        row["address"] = usecase.address(row)
    buildings = usecase.building_groups(households)
    done = next((h for h in households if str(h["household_id"]) == checked), None) if checked else None
    return render(request, "responder/home.html", page="responder", title=HOME_TITLES["responder"],
                  households=households, buildings=buildings, region_names=request.state.region_names,
                  visit_kinds=VISIT_KINDS, checked=done, far=bool(far), far_m=int(FAR_M))


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
