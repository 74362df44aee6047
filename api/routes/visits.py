"""Responder JSON routes (issue 15): the visit log (签到走访), nearby incidents (附近事件), 接单, progress
notes and 在岗/离岗. Thin: each calls ``api.usecases.responder``. Coordinates in the system ``coords``
names (stored WGS84); distances metres; times ISO 8601 with zone.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    UploadFile,
    status,
)
from pydantic import BaseModel, Field

from api.auth import Principal, current_principal, not_found, require_roles
from api.usecases import responder as usecase
from geodata.store import incidents
from geodata.store.links import member_grid
from geodata.store.visits import NotLinked

router = APIRouter(tags=["responder"])
Coords = Literal["wgs84", "gcj02", "bd09", "cgcs2000"]


def _member(principal: Principal) -> str:
    if principal.member_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this account belongs to no member (无党员编号)")
    return principal.member_id


@router.post("/me/visits", status_code=status.HTTP_201_CREATED)
async def check_in(request: Request, household_id: Annotated[str, Form(max_length=200)],
                   kind: Annotated[Literal["door", "phone"], Form()] = "door",
                   note: Annotated[str, Form(max_length=2000)] = "",
                   lon: Annotated[float | None, Form(ge=-180, le=180)] = None,
                   lat: Annotated[float | None, Form(ge=-90, le=90)] = None,
                   coords: Annotated[Coords, Form()] = "wgs84",
                   accuracy_m: Annotated[float | None, Form(ge=0, lt=100_000)] = None,
                   photo: Annotated[UploadFile | None, File()] = None,
                   principal: Principal = Depends(require_roles("responder"))):
    """签到走访 at one of my households: position (``coords``; flagged beyond 200 m), accuracy, kind, note, photo."""
    _member(principal)
    settings = request.app.state.settings
    data = await photo.read(settings.photo_max_bytes + 1) if photo is not None and photo.filename else None
    try:
        return usecase.check_in(principal.engine, principal, household_id=household_id, kind=kind, note=note,
                                lon=lon, lat=lat, coords=coords, accuracy_m=accuracy_m, photo=data,
                                upload_dir=settings.upload_dir, photo_max_bytes=settings.photo_max_bytes)
    except NotLinked:
        raise not_found() from None
    except usecase.VisitRefused as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(e)) from None


@router.get("/members/{member_id}/visits")
def member_visits(member_id: str, limit: int = Query(50, ge=1, le=500),
                  principal: Principal = Depends(current_principal)):
    """A member's latest visits: the member themself, dispatchers and leaders of the member's region
    (notes only where personal data is allowed); anyone else the 404 of a missing member."""
    if member_id != principal.member_id:
        principal.require_role("dispatcher", "leader")
        exists, grid = member_grid(principal.engine, member_id)
        if not exists or not principal.covers(grid_code=grid):
            raise not_found()
    return usecase.visible_visits(principal.engine, principal, member_id, limit)


@router.get("/me/incidents/nearby")
def nearby(lon: float | None = Query(None, ge=-180, le=180), lat: float | None = Query(None, ge=-90, le=90),
           coords: Coords = "wgs84", radius_m: float = Query(1000.0, gt=0, le=20_000),
           principal: Principal = Depends(require_roles("responder"))):
    """附近事件: unassigned incidents near the phone (or my grid) matching my skills, nearest first."""
    _member(principal)
    try:
        return usecase.nearby_incidents(principal.engine, principal, lon, lat, coords, radius_m)
    except usecase.VisitRefused as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(e)) from None


class NoteIn(BaseModel):
    note: str = Field(..., min_length=1, max_length=2000)


def _act(principal: Principal, incident_id: str, action: str, note: str | None = None) -> dict:
    try:
        return usecase.act_on_incident(principal.engine, principal, incident_id, action, note)
    except incidents.NotFound:
        raise not_found() from None
    except usecase.IncidentRefused as e:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(e)) from None


@router.post("/incidents/{incident_id}/claim")
def claim(incident_id: str, principal: Principal = Depends(current_principal)):
    """接单: take an unassigned incident of my region (accepted at once). Two members at once: one
    gets 200, the other 409 saying it is taken."""
    if principal.member_id is None:
        try:
            inc = incidents.get_incident(principal.engine, incident_id)
        except incidents.NotFound:
            raise not_found() from None
        if not principal.covers(inc["grid_code"], inc["community_code"], inc["street_code"]):
            raise not_found()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"cannot claim an incident that is {inc['status']} "
                                                             "without a member (无党员编号)")
    return _act(principal, incident_id, "claim")


@router.post("/me/incidents/{incident_id}/notes")
def progress_note(incident_id: str, body: NoteIn, principal: Principal = Depends(require_roles("responder"))):
    """处置进展: a progress note on my accepted incident (stored as an event)."""
    return _act(principal, incident_id, "note", body.note)


class DutyIn(BaseModel):
    available: bool


@router.post("/me/available")
def on_duty(body: DutyIn, principal: Principal = Depends(require_roles("responder"))):
    """在岗/离岗: my availability for nearest-responder search."""
    _member(principal)
    return {"member_id": principal.member_id, "available": usecase.set_on_duty(principal.engine, principal,
                                                                               body.available)}
