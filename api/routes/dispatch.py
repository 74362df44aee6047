"""Dispatch routes: incident reporting and its life cycle, a responder's own view (the nearest-responder
read, a hot path, lives in ``api/routes/nearest.py``).

一键上报 → 智能分派 → 处置 → 反馈评价 with 红黄绿灯 deadlines (seeds 001, 002, 004). Coordinates
WGS84 unless ``coords`` says otherwise; distances metres. Rules in ``gridmap.dispatch``, queries in
``geodata.store`` (``nearest``, ``routing``, ``incidents``).

Roles: dispatchers and leaders route and assign; the assigned responder accepts and closes (a
dispatcher or leader may do it for them); ratings (群众评单) are recorded by dispatchers or
leaders. Every object must lie in the token's regions.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

import numpy as np
import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from api.auth import Principal, caller, current_principal, hot_reader, not_found, present_pii_async, require_roles
from api.hotpath import VALIDATION_ERROR, HotRoute, parse_query, query_parameters
from api.usecases import dispatch as uc
from api.usecases.deadlines import deadline_policy
from geodata.crs import to_wgs84
from geodata.errors import InputError
from geodata.validate import check_lonlat
from geodata.store import incidents
from geodata.store import pool as hot
from geodata.store.nearest import reader_engine
from geodata.store.routing import route_point
from gridmap import dispatch as rules
from gridmap.contract import SERVICE_RADIUS_M
from gridmap.privacy import mask_id_number

router = APIRouter(tags=["dispatch"])

DISPATCH_ROLES = ("dispatcher", "leader")
NEAREST_ROLES = ("dispatcher", "leader", "responder")

Lon = Query(..., ge=-180, le=180, description="Longitude, WGS84 degrees.")
Lat = Query(..., ge=-90, le=90, description="Latitude, WGS84 degrees.")


# -- schemas -----------------------------------------------------------------------------------------

class Proposal(BaseModel):
    member_id: str
    kind: str | None = None
    grid_code: str | None = None
    distance_m: float


class IncidentIn(BaseModel):
    """A reported incident (一键上报): location, category, level, the skill it needs."""

    lon: float = Field(..., ge=-180, le=180, description="Longitude in the system named by ``coords``.")
    lat: float = Field(..., ge=-90, le=90, description="Latitude in the system named by ``coords``.")
    coords: Literal["wgs84", "gcj02", "bd09", "cgcs2000"] = Field(
        "wgs84", description="Coordinate system of lon/lat: Amap/Tencent gcj02, Baidu bd09.")
    category: str = Field(..., min_length=1, max_length=100, description="e.g. 民政, 消防安全, 矛盾纠纷.")
    level: int | None = Field(None, ge=1, le=9, description="Level; 2 or more makes the incident complex.")
    kind: Literal["ordinary", "complex"] | None = Field(
        None, description="一般事项 (24 h) or 复杂事项 (3 working days); default from category and level.")
    required_skill: str | None = Field(None, max_length=50, description="Skill tag a responder must have (法律, 医疗 …).")
    reported_at: datetime | None = Field(None, description="When reported (ISO 8601; no zone = China time); default now.")
    source: str | None = Field(None, max_length=100)
    radius_m: float = Field(SERVICE_RADIUS_M, gt=0, le=100_000, description="Grid-level search radius, metres.")

    @field_validator("reported_at")
    @classmethod
    def _plausible_time(cls, v: datetime | None) -> datetime | None:
        # A report from the future (beyond a day of clock skew) or before 1970 is a typing error,
        # and a deadline past year 9999 cannot be represented.
        if v is None:
            return v
        t = rules.to_local(v)
        if t.year < 1970 or t > datetime.now(timezone.utc) + timedelta(days=1):
            raise ValueError("reported_at must lie between 1970 and now (+1 day of clock skew)")
        return v


class Incident(BaseModel):
    """An incident with its routing, deadline, 红黄绿灯 light and proposed responders."""

    incident_id: str
    category: str
    level: int | None
    status: str
    response_kind: str | None
    required_skill: str | None
    reported_at: datetime
    deadline_at: datetime | None
    light: str | None
    respond_due_at: datetime | None = None  # 接单 deadline; deadline_at is the 办结 (completion) deadline
    respond_light: str | None = None
    complete_light: str | None = None
    grid_code: str | None
    community_code: str | None
    street_code: str | None
    escalation_level: str | None
    escalated: bool
    assigned_member_id: str | None
    assigned_at: datetime | None
    accepted_at: datetime | None
    closed_at: datetime | None
    rating: int | None
    source: str | None
    lon: float
    lat: float
    proposed: list[Proposal] | None = None
    distance_m: float | None = None


class AssignIn(BaseModel):
    member_id: str | None = Field(None, max_length=200, description="The responder; default: the nearest suitable one.")
    escalate: str | None = Field(
        None, min_length=2, max_length=500,
        description="吹哨报到: why a responder outside your regions is needed. Without it a responder outside "
                    "your regions is refused (403); with it the search is widened and your token and reason "
                    "are recorded in the incident's history.")


class RateIn(BaseModel):
    rating: int = Field(..., ge=1, le=5, description="Satisfaction 1 (worst) – 5 (best).")


class Household(BaseModel):
    """A linked household (包片联户), personal data masked unless the caller may see it."""

    household_id: str
    grid_code: str | None
    size: int | None
    tags: list[str] | None
    name: str | None
    phone: str | None
    id_number: str | None
    lon: float
    lat: float
    distance_m: float | None
    visit_order: int | None


HOUSEHOLD_FIELDS = tuple(Household.model_fields)


# -- helpers -----------------------------------------------------------------------------------------

def _engine(request: Request):
    return request.app.state.engine


def _reader(request: Request):
    """An autocommit engine on the app's database for single-statement reads (see
    ``geodata.store.nearest.reader_engine``: no pre-ping/BEGIN/ROLLBACK round trips)."""
    base = request.app.state.engine
    cached = getattr(request.app.state, "dispatch_reader", None)
    if cached is None or cached[0] is not base:
        cached = (base, reader_engine(base.url.render_as_string(hide_password=False)))
        request.app.state.dispatch_reader = cached
    return cached[1]


def _no_incident(incident_id: str) -> HTTPException:
    # One answer for "missing" and "not yours": nothing is revealed about other regions' incidents.
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no incident {incident_id}")


def _incident_or_404(engine, incident_id: str, principal: Principal) -> dict:
    """The incident, if the caller's regions cover it or it is assigned to the caller (an escalated
    incident may be assigned to a responder of another grid); the same 404 otherwise."""
    try:
        inc = incidents.get_incident(engine, incident_id)
    except incidents.NotFound:
        raise _no_incident(incident_id) from None
    if not (_assigned_to(principal, inc) or principal.covers(inc["grid_code"], inc["community_code"],
                                                             inc["street_code"])):
        raise _no_incident(incident_id)
    return inc


def _assigned_to(principal: Principal, inc: dict) -> bool:
    """Whether the incident is assigned to the caller's own member (a token without one has none)."""
    return principal.member_id is not None and principal.member_id == inc["assigned_member_id"]


def _out(inc: dict) -> dict:
    return incidents.with_light(inc, datetime.now(timezone.utc)) if "light" not in inc else inc


def _act(request: Request, incident_id: str, action: str, principal: Principal, **kw) -> dict:
    engine = _engine(request)
    inc = _incident_or_404(engine, incident_id, principal)
    acting = None
    if action in ("accept", "close") and not principal.has_role(*DISPATCH_ROLES):
        principal.require_role("responder", *DISPATCH_ROLES)
        acting = principal.member_id
        if acting is None or acting != inc["assigned_member_id"]:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this incident is not assigned to you")
    try:
        return _out(uc.act(engine, principal, incident_id, action, acting_member=acting, **kw))
    except incidents.OutsideRegions as e:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(e)) from None
    except rules.IllegalTransition as e:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(e)) from None
    except incidents.Unavailable as e:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(e)) from None
    except incidents.WrongMember as e:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(e)) from None
    except incidents.NotFound as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(e)) from None


def _me(principal: Principal, member_id: str | None) -> str:
    """The member whose view is asked for: the token's own member; a dispatcher/leader may name one
    of their regions (a missing member and another region's get the same 403, so nothing is told
    about members elsewhere)."""
    if member_id is not None and member_id != principal.member_id:
        principal.require_role(*DISPATCH_ROLES)
        if not principal.everywhere:
            from geodata.store.links import member_grid

            exists, grid = member_grid(principal.engine, member_id)
            if not (exists and principal.covers(grid_code=grid)):
                raise not_found()  # missing and another region's member: the same 404
        return member_id
    if principal.member_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail="this token belongs to no member; pass member_id (dispatchers and leaders)")
    return principal.member_id


# -- routes ------------------------------------------------------------------------------------------

@router.post("/incidents", response_model=Incident, status_code=status.HTTP_201_CREATED)
def report_incident(request: Request, body: IncidentIn,
                    principal: Principal = Depends(require_roles(*NEAREST_ROLES))):
    """Report an incident (一键上报): routed to its grid/community/street, deadline set (ordinary 24 h,
    complex 3 working days), nearest suitable responders proposed — escalating grid → community →
    street (吹哨报到) when the grid has nobody suitable within ``radius_m``."""
    lon, lat = (float(np.asarray(v).ravel()[0]) for v in to_wgs84(np.array([body.lon]), np.array([body.lat]), body.coords))
    # Refuse a point outside China (swapped or wrong coordinates) and, for a regional token, a point
    # outside its regions (security review, api.auth).
    problems = check_lonlat(np.array([lon]), np.array([lat]), None, "lon", "lat")
    if problems:
        for p in problems:
            p.row = None
        raise InputError(problems)
    if not principal.everywhere:
        with _engine(request).connect() as conn:
            where = route_point(conn, lon, lat)
        principal.require(where["grid_code"], where["community_code"], where["street_code"])
    policy = deadline_policy(request.app.state.settings)  # the one rule of every incident (api.usecases.deadlines)
    inc = uc.report_incident(_engine(request), principal, lon=lon, lat=lat, category=body.category, level=body.level,
                             required_skill=body.required_skill, kind=body.kind, reported_at=body.reported_at,
                             source=body.source, calendar=policy.calendar, radius_m=body.radius_m,
                             deadline_rules=policy.rules)
    return _out(inc)


@router.get("/incidents", response_model=list[Incident])
def list_incidents(request: Request,
                   region: str | None = Query(None, max_length=100, description="A grid, community or street code."),
                   light: Literal["green", "yellow", "red"] | None = Query(None, description="Only this 红黄绿灯 light."),
                   status_: str | None = Query(None, alias="status", max_length=20, description="Only this status."),
                   open_only: bool = Query(False, alias="open", description="Only reported/assigned/accepted."),
                   limit: int = Query(500, ge=1, le=10_000),
                   principal: Principal = Depends(require_roles(*DISPATCH_ROLES))):
    """Incidents newest first with their light: green on time, yellow in the last 20 % of the
    window, red overdue (closed incidents: at their closing time)."""
    if region is not None:
        principal.require_code(region)
    rows = incidents.list_incidents(_reader(request), region=region, light=light, status=status_, open_only=open_only,
                                limit=limit if principal.everywhere else 100_000)
    if not principal.everywhere:
        rows = [r for r in rows if principal.covers(r["grid_code"], r["community_code"], r["street_code"])][:limit]
    return rows


@router.get("/incidents/{incident_id}", response_model=Incident)
def get_incident(request: Request, incident_id: str, principal: Principal = Depends(current_principal)):
    """One incident with its light and proposed responders: for dispatchers and leaders of its region
    and for the responder it is assigned to; everyone else gets the 404 of a missing incident."""
    inc = _incident_or_404(_engine(request), incident_id, principal)
    if not (principal.has_role(*DISPATCH_ROLES) or _assigned_to(principal, inc)):
        raise _no_incident(incident_id)
    return _out(inc)


@router.post("/incidents/{incident_id}/assign", response_model=Incident)
def assign(request: Request, incident_id: str, body: AssignIn | None = None,
           principal: Principal = Depends(require_roles(*DISPATCH_ROLES))):
    """支部派单: assign to a responder of your regions (default the nearest suitable); again before
    acceptance re-assigns. 409 when the incident's state does not allow it or the responder is
    unavailable; 403 for a responder outside your regions unless ``escalate`` (吹哨报到) says why."""
    body = body or AssignIn()
    escalation = None
    if body.escalate:
        escalation = {"reason": body.escalate, "token_id": principal.token_id, "role": principal.role}
    return _act(request, incident_id, "assign", principal, member_id=body.member_id,
                within=principal.grid_codes(), escalation=escalation)


@router.post("/incidents/{incident_id}/accept", response_model=Incident)
def accept(request: Request, incident_id: str, principal: Principal = Depends(current_principal)):
    """党员接单: the assigned responder accepts. 409 unless the incident is assigned."""
    return _act(request, incident_id, "accept", principal)


class CloseIn(BaseModel):
    note: str | None = Field(None, max_length=2000, description="办结说明: the result, kept in the close event.")


@router.post("/incidents/{incident_id}/close", response_model=Incident)
def close(request: Request, incident_id: str, body: CloseIn | None = None,
          principal: Principal = Depends(current_principal)):
    """处置办结: the responder closes it with a result note (stops the deadline clock). 409 unless accepted."""
    return _act(request, incident_id, "close", principal, note=(body.note or None) if body else None)


@router.post("/incidents/{incident_id}/rate", response_model=Incident)
def rate(request: Request, incident_id: str, body: RateIn,
         principal: Principal = Depends(require_roles(*DISPATCH_ROLES))):
    """群众评单: record the resident's 1–5 rating. 409 unless closed (and not rated yet)."""
    return _act(request, incident_id, "rate", principal, rating=body.rating)


class MyHouseholdsQuery(BaseModel):
    """The query string of ``/me/households``."""

    model_config = ConfigDict(extra="ignore")

    member_id: str | None = Field(None, max_length=200,
                                  description="Dispatchers/leaders: whose view (default: the token's member).")


async def my_households(request: Request):
    """The caller's 包片联户 households in visiting order (personal data shown only as allowed, audited)."""
    # A hot route (api.hotpath): the caller (401), then the query (422), with no dependency solved per request.
    principal = await caller(request)
    member_id = parse_query(request, MyHouseholdsQuery).member_id
    # A hot read of the responder pages: in the event loop over geodata.store.pool (issue 19); naming
    # another member keeps its synchronous checks.
    own_view = member_id is None or member_id == principal.member_id
    me = _me(principal, None) if own_view else await run_in_threadpool(_me, principal, member_id)
    reader = hot_reader(request)
    rows = await hot.member_households(reader, me)
    own = {r["household_id"] for r in rows} if me == principal.member_id else None
    shown = await present_pii_async(reader, principal, "households", rows, "household_id", own_ids=own)
    if principal.role == "responder":  # a responder needs name and phone, never the 身份证号 (issue 15)
        shown = [{**r, "id_number": mask_id_number(r["id_number"])} for r in shown]
    return Response(orjson.dumps([{f: r[f] for f in HOUSEHOLD_FIELDS} for r in shown]), media_type="application/json")


# Registered here, in the file's order, as a hot route (``APIRouter.get`` takes no route class).
router.add_api_route("/me/households", my_households, methods=["GET"], response_model=list[Household],
                     route_class_override=HotRoute, responses={422: VALIDATION_ERROR},
                     openapi_extra={"parameters": query_parameters(MyHouseholdsQuery)})


@router.get("/me/incidents", response_model=list[Incident])
def my_incidents(request: Request,
                 lon: float | None = Query(None, ge=-180, le=180, description="Where you are (WGS84); default home."),
                 lat: float | None = Query(None, ge=-90, le=90),
                 member_id: str | None = Query(None, max_length=200,
                                               description="Dispatchers/leaders: whose view (default: the token's member)."),
                 principal: Principal = Depends(current_principal)):
    """The caller's open incidents, nearest first from ``lon``/``lat`` (``distance_m`` in metres)."""
    me = _me(principal, member_id)
    try:
        return incidents.member_incidents(_reader(request), me, lon, lat)
    except incidents.NotFound as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(e)) from None

