"""The residents' pages (no login, phone first): 一键上报 / 需求点单 at ``/report``, following a ticket
at ``/report/{ticket}``, and 评单.

Nothing a resident sends is rendered as HTML (autoescaped templates, photos re-encoded and shown as
images). Following needs the phone's last four digits (sent in a POST form, never in the URL) or the
secret follow link; a wrong code gets the same page as a missing ticket. Logged-in staff opening
these pages need their session's CSRF token like everywhere else (``api.web.csrf``).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile

from api.auth import SESSION_COOKIE, public
from api.usecases import reports_public as uc
from api.usecases.deadlines import deadline_policy
from api.web.render import chosen_basemap, render
from geodata.store import tickets
from geodata.store.users import csrf_token_for

router = APIRouter(include_in_schema=False)

TITLE = "一键上报"
NO_TICKET = "没有找到这张工单，或手机号后四位不对。"


def _limits(request: Request) -> uc.Limits:
    state = request.app.state
    if getattr(state, "report_limits", None) is None:
        state.report_limits = uc.Limits()
    return state.report_limits


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _page(request: Request, template: str, status_code: int = 200, **context):
    session_id = request.cookies.get(SESSION_COOKIE)
    context.setdefault("title", TITLE)
    context["csrf_token"] = csrf_token_for(session_id) if session_id else ""
    context["when"] = uc.when
    return render(request, template, status_code=status_code, user=None, **context)


def _form(request: Request, status_code: int = 200, error: uc.ReportRefused | None = None, values: dict | None = None):
    settings = request.app.state.settings
    return _page(request, "report/new.html", status_code=status_code, categories=settings.report_categories,
                 help_category=uc.HELP_CATEGORY, skills=uc.HELP_SKILLS, error=error, values=values or {},
                 pin_coords="gcj02" if chosen_basemap(request) == "amap" else "wgs84")


@router.get("/report")
@public
def report_form(request: Request):
    """The report form: category, description, place, address, up to three photos, call-back phone."""
    return _form(request)


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


@router.post("/report")
@public
async def report_submit(request: Request, category: Annotated[str, Form(max_length=50)] = "",
                        description: Annotated[str, Form(max_length=5000)] = "",
                        lon: Annotated[str, Form(max_length=40)] = "", lat: Annotated[str, Form(max_length=40)] = "",
                        coords: Annotated[str, Form(max_length=10)] = "wgs84",
                        address: Annotated[str, Form(max_length=1000)] = "",
                        phone: Annotated[str, Form(max_length=40)] = "",
                        skill: Annotated[str, Form(max_length=20)] = "",
                        website: Annotated[str, Form(max_length=200)] = "",
                        photos: Annotated[list[UploadFile], File()] = ()):
    """Store the report and answer with the ticket number and the follow link (or the form with the problem)."""
    settings = request.app.state.settings
    raw = [await p.read(tickets.MAX_PHOTO_BYTES + 1) for p in photos[: tickets.MAX_PHOTOS + 1]]
    report = uc.ReportIn(category=category, description=description, lon=_float(lon), lat=_float(lat),
                         coords=coords, address=address, phone=phone, skill=skill, photos=raw, honeypot=website)
    try:
        made = uc.submit_report(request.app.state.engine, report, client=_client(request), limits=_limits(request),
                                upload_dir=settings.upload_dir, categories=tuple(settings.report_categories),
                                deadlines=deadline_policy(settings))
    except uc.ReportRefused as e:
        values = {"category": category, "description": description, "address": address, "phone": phone,
                  "skill": skill, "lon": lon, "lat": lat, "coords": coords}
        return _form(request, status_code=e.status, error=e, values=values)
    follow = f"/report/{made['ticket']}?k={made['follow_key']}"
    return _page(request, "report/done.html", status_code=201, ticket=made["ticket"], follow=follow,
                 has_phone=bool(phone.strip()))


def _photos(request: Request, incident_id: str) -> list[str]:
    """The ticket's photos as ``data:`` URLs (they hold no metadata; no separate photo URL to guess)."""
    folder = Path(request.app.state.settings.upload_dir)
    out = []
    for p in tickets.ticket_photos(request.app.state.engine, incident_id):
        data = (folder / p["path"]).read_bytes()
        out.append(f"data:{p['content_type']};base64,{base64.b64encode(data).decode()}")
    return out


def _show(request: Request, ticket: str, row: dict | None, key: str = "", code: str = "",
          error: uc.ReportRefused | None = None, status_code: int = 200, tried: bool = False):
    """The progress page of a matched ticket; for no match the code form (404 with the one text for a
    missing ticket and a wrong code once a code or key was tried)."""
    if row is None:
        tried = tried or bool(key or code)
        return _page(request, "report/code.html", status_code=404 if tried else 200, ticket=ticket,
                     error=NO_TICKET if tried else None)
    view = uc.follow_view(request.app.state.engine, row)
    return _page(request, "report/follow.html", status_code=status_code, view=view, key=key, code=code,
                 error=error, photos=_photos(request, row["incident_id"]), title="工单进度")


def _open(request: Request, ticket: str, code: str, key: str):
    try:
        return uc.open_ticket(request.app.state.engine, ticket, code=code, key=key, client=_client(request),
                              limits=_limits(request)), None
    except uc.ReportRefused as e:
        return None, _page(request, "report/code.html", status_code=e.status, ticket=ticket, error=e.message)


@router.get("/report/{ticket}")
@public
def follow_link(request: Request, ticket: str, k: str = ""):
    """Follow a ticket: with the secret link's ``k`` the progress, otherwise the form asking for the code."""
    row, refused = _open(request, ticket, "", k[:100]) if k else (None, None)
    return refused or _show(request, ticket, row, key=k[:100])


@router.post("/report/{ticket}")
@public
def follow_code(request: Request, ticket: str, code: Annotated[str, Form(max_length=20)] = "",
                k: Annotated[str, Form(max_length=100)] = ""):
    """Follow a ticket with the phone's last four digits (or the link's key, sent again by the page)."""
    row, refused = _open(request, ticket, code, k)
    return refused or _show(request, ticket, row, key=k, code=code, tried=True)


@router.post("/report/{ticket}/rate")
@public
def rate(request: Request, ticket: str, rating: Annotated[str, Form(max_length=2)] = "",
         comment: Annotated[str, Form(max_length=2000)] = "", code: Annotated[str, Form(max_length=20)] = "",
         k: Annotated[str, Form(max_length=100)] = ""):
    """评单: 1–5 stars and a comment, once, when the ticket is closed."""
    row, refused = _open(request, ticket, code, k)
    if refused or row is None:
        return refused or _show(request, ticket, None, tried=True)
    try:
        uc.rate(request.app.state.engine, row, rating, comment)
    except uc.ReportRefused as e:
        return _show(request, ticket, row, key=k, code=code, error=e, status_code=e.status)
    row = tickets.find_ticket(request.app.state.engine, ticket, code=code or None, key=k or None)
    return _show(request, ticket, row, key=k, code=code)
