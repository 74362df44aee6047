"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2) over the residents' tickets.

``/open311/v2/discovery``, ``services``, ``services/{code}``, ``requests`` (GET with filters, POST with
``api_key``), ``requests/{id}`` and ``tokens/{token}``, each as ``.json`` or ``.xml``. Errors come as
``[{"code", "description"}]``. Reads are public (what is published is listed in
``api.usecases.open311``); writing needs ``api_key`` = a bearer token of a role that may report. The
services are the deployment's report categories (``report_categories``), each with its deadlines.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, Response

from api.auth import public
from api.usecases import open311 as uc
from api.usecases.deadlines import deadline_policy

router = APIRouter(prefix="/open311/v2", tags=["open311"])
Fmt = Literal["json", "xml"]


def _answer(fmt: str, root: str, item: str | None, value, status: int = 200) -> Response:
    if fmt == "xml":
        return Response(uc.to_xml(root, item, value), status_code=status, media_type="text/xml; charset=utf-8")
    return JSONResponse(value, status_code=status)


def _run(fmt: str, root: str, item: str | None, make, status: int = 200) -> Response:
    try:
        return _answer(fmt, root, item, make(), status)
    except uc.Open311Error as e:
        return _answer(fmt, "errors", "error", e.body(), e.status)


@router.get("/discovery.{fmt}")
@public
def discovery(request: Request, fmt: Fmt):
    """Where this GeoReport v2 endpoint lives and which formats it speaks."""
    return _answer(fmt, "discovery", None, uc.discovery(str(request.base_url).rstrip("/")))


def _categories(request: Request) -> tuple[str, ...]:
    """The deployment's report categories (``report_categories``): the services of this endpoint."""
    return tuple(request.app.state.settings.report_categories)


@router.get("/services.{fmt}")
@public
def services(request: Request, fmt: Fmt):
    """The services (the deployment's report categories) a request may be filed under, with their deadlines."""
    return _answer(fmt, "services", "service",
                   uc.services(_categories(request), deadline_policy(request.app.state.settings)))


@router.get("/services/{code}.{fmt}")
@public
def service_definition(request: Request, code: str, fmt: Fmt):
    """A service's definition (no extra attributes: ``metadata`` is false for every service)."""
    return _run(fmt, "service_definition", None, lambda: uc.service_definition(code, _categories(request)))


@router.get("/requests.{fmt}")
@public
def list_requests(request: Request, fmt: Fmt,
                  service_request_id: str | None = Query(None, max_length=2000, description="Comma-separated ids."),
                  service_code: str | None = Query(None, max_length=20),
                  start_date: str | None = Query(None, max_length=40, description="ISO 8601 with time zone."),
                  end_date: str | None = Query(None, max_length=40, description="ISO 8601; at most 90 days after start."),
                  status: str | None = Query(None, max_length=10, description="open or closed.")):
    """Service requests, newest first (at most 1000; default the last 90 days)."""
    return _run(fmt, "service_requests", "request", lambda: uc.list_requests(
        request.app.state.engine, ids=service_request_id, code=service_code, start_date=start_date,
        end_date=end_date, status=status, categories=_categories(request)))


@router.get("/requests/{request_id}.{fmt}")
@public
def get_request(request: Request, request_id: str, fmt: Fmt):
    """One service request (as a list of one, as the spec has it)."""
    return _run(fmt, "service_requests", "request", lambda: uc.get_request(request.app.state.engine, request_id))


@router.get("/tokens/{token}.{fmt}")
@public
def token(request: Request, token: str, fmt: Fmt):
    """Requests are created at once: the token of a POST is its service_request_id."""
    return _run(fmt, "service_requests", "request", lambda: [
        {"service_request_id": r["service_request_id"], "token": token}
        for r in uc.get_request(request.app.state.engine, token)])


@router.post("/requests.{fmt}")
@public
def post_request(request: Request, fmt: Fmt, api_key: Annotated[str, Form(max_length=200)] = "",
                 service_code: Annotated[str, Form(max_length=20)] = "",
                 lat: Annotated[float | None, Form(ge=-90, le=90)] = None,
                 long: Annotated[float | None, Form(ge=-180, le=180)] = None,
                 description: Annotated[str, Form(max_length=4000)] = "",
                 address_string: Annotated[str, Form(max_length=1000)] = "",
                 phone: Annotated[str, Form(max_length=40)] = "",
                 email: Annotated[str, Form(max_length=200)] = ""):
    """File a request (WGS84 ``lat``/``long``); ``phone``/``email`` are never published."""
    return _run(fmt, "service_requests", "request", lambda: uc.post_request(
        request.app.state.engine, api_key=api_key, service_code=service_code, lat=lat, lon=long,
        description=description, address=address_string, phone=phone,
        upload_dir=request.app.state.settings.upload_dir, categories=_categories(request),
        deadlines=deadline_policy(request.app.state.settings)), status=201)
