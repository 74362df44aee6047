"""Open311 GeoReport v2 for other systems: services, requests (the residents' tickets), errors.

Service requests are the tickets of :mod:`geodata.store.tickets` (``service_request_id`` = ticket
number). Published: category, description, status (``open``/``closed``; the finer state in
``status_notes``), times in ISO 8601 with the China offset, and the place rounded to 0.001° (about
100 m) — a resident's report may be made at their own door. Never published: the reporter's phone or
e-mail, the address text (it may name a flat), photos, responders. The services are the deployment's
report categories (the ``report_categories`` setting; :func:`service_code` keeps their codes stable),
and a request's deadlines follow the deployment's rules (:mod:`api.usecases.deadlines`). No FastAPI here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET

from sqlalchemy import text
from sqlalchemy.engine import Engine

from api.usecases.deadlines import DeadlinePolicy, category_windows_text, due_text
from api.usecases.reports_public import DEFAULT_CATEGORIES, HELP_CATEGORY, STATUS_TEXT
from geodata.store.tickets import PUBLIC_SOURCE
from gridmap import dispatch as rules

#: Longest start_date…end_date window and most requests in one answer (the spec's defaults).
MAX_WINDOW = timedelta(days=90)
MAX_REQUESTS = 1000
#: Decimal places of published coordinates (0.001° ≈ 100 m).
PUBLIC_DECIMALS = 3
#: The codes of the default categories, fixed since the first release (other systems store them).
KNOWN_CODES = {name: f"{i:03d}" for i, name in enumerate(DEFAULT_CATEGORIES, start=1)}


def service_code(category: str) -> str:
    """The Open311 ``service_code`` of a report category: ``001``–``005`` for the default categories,
    otherwise ``c`` and 8 hex digits of the name's SHA-256 — ASCII (it goes into URLs), and stable
    whatever the order or the other entries of the ``report_categories`` setting."""
    known = KNOWN_CODES.get(category.strip())
    return known or "c" + hashlib.sha256(category.strip().encode("utf-8")).hexdigest()[:8]


def service_codes(categories: Sequence[str] = DEFAULT_CATEGORIES) -> dict[str, str]:
    """code → category of the deployment's report categories (the ``report_categories`` setting), in its order."""
    return {service_code(name): name.strip() for name in categories}


class Open311Error(ValueError):
    """An error in the spec's shape: ``[{"code": status, "description": text}]``."""

    def __init__(self, status: int, description: str):
        super().__init__(description)
        self.status, self.description = status, description

    def body(self) -> list[dict]:
        return [{"code": self.status, "description": self.description}]


def discovery(base_url: str) -> dict:
    """The discovery document: where this endpoint lives and what it speaks."""
    return {"changeset": "2025-01-01T00:00:00+08:00", "contact": "街道网格党建办公室",
            "key_service": "api_key: a bearer token from `gridmap token create --role dispatcher`",
            "endpoints": [{"specification": "http://wiki.open311.org/GeoReport_v2", "url": f"{base_url}/open311/v2",
                           "changeset": "2025-01-01T00:00:00+08:00", "type": "production",
                           "formats": ["application/json", "text/xml"]}]}


def services(categories: Sequence[str] = DEFAULT_CATEGORIES, deadlines: DeadlinePolicy | None = None) -> list[dict]:
    """The service list: one service per report category of the deployment (求助服务 is a need,
    需求点单), each described with its two deadlines (``deadlines``: the deployment's windows)."""
    policy = deadlines or DeadlinePolicy()
    return [{"service_code": code, "service_name": name, "metadata": False, "type": "realtime",
             "keywords": "需求点单" if name == HELP_CATEGORY else "", "group": "网格事项",
             "description": f"{name}（网格党员处理；{category_windows_text(policy, name)}）"}
            for code, name in service_codes(categories).items()]


def service_definition(code: str, categories: Sequence[str] = DEFAULT_CATEGORIES) -> dict:
    if code not in service_codes(categories):
        raise Open311Error(404, f"service_code {code[:20]} not found")
    return {"service_code": code, "attributes": []}


def _iso(value: datetime | None) -> str | None:
    return rules.to_local(value).isoformat(timespec="seconds") if value else None


def _public(row: dict) -> dict:
    closed = row["status"] in (rules.CLOSED, rules.RATED)
    return {"service_request_id": row["ticket"], "status": "closed" if closed else "open",
            "status_notes": f"{row['status']} {STATUS_TEXT.get(row['status'], '')}".strip(),
            "service_name": row["category"], "service_code": service_code(row["category"] or ""),
            "description": row["description"], "agency_responsible": row["grid_code"] or "",
            "service_notice": "", "requested_datetime": _iso(row["reported_at"]),
            "updated_datetime": _iso(row["updated_at"]), "expected_datetime": _iso(row["deadline_at"]),
            "address": "", "address_id": "", "zipcode": "",
            "lat": round(row["lat"], PUBLIC_DECIMALS), "long": round(row["lon"], PUBLIC_DECIMALS), "media_url": ""}


_COLS = ("ticket, category, status, description, grid_code, reported_at, updated_at, deadline_at, "
         "ST_X(geom) AS lon, ST_Y(geom) AS lat")


def _parse_time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return rules.to_local(datetime.fromisoformat(value))
    except ValueError:
        raise Open311Error(400, f"{name} is not an ISO 8601 date-time: {value[:40]}") from None


# More than five arguments on purpose: the spec's filters, passed by keyword from the route.
def list_requests(engine: Engine, *, ids: str | None = None, code: str | None = None,  # noqa: PLR0913
                  start_date: str | None = None, end_date: str | None = None, status: str | None = None,
                  categories: Sequence[str] = DEFAULT_CATEGORIES) -> list[dict]:
    """GET requests: by id list, or by service ``code`` (one of ``categories``), status and a window of
    at most 90 days (default the last 90 days), newest first, at most 1000."""
    where, params = ["source = :src", "ticket IS NOT NULL"], {"src": PUBLIC_SOURCE, "n": MAX_REQUESTS}
    if ids:
        where.append("ticket = ANY(:ids)")
        params["ids"] = [i.strip() for i in ids.split(",") if i.strip()][:MAX_REQUESTS]
    else:
        end = _parse_time(end_date, "end_date") or datetime.now(UTC)
        start = _parse_time(start_date, "start_date") or end - MAX_WINDOW
        if end - start > MAX_WINDOW or end < start:
            raise Open311Error(400, "start_date and end_date must be in order and at most 90 days apart")
        where.append("reported_at BETWEEN :start AND :end")
        params.update(start=start, end=end)
        if code:
            where.append("category = :cat")
            params["cat"] = service_codes(categories).get(code, "")
        if status:
            if status not in ("open", "closed"):
                raise Open311Error(400, "status must be open or closed")
            where.append(("NOT " if status == "open" else "") + "(status = ANY(:closed))")
            params["closed"] = [rules.CLOSED, rules.RATED]
    sql = f"SELECT {_COLS} FROM incidents WHERE {' AND '.join(where)} ORDER BY reported_at DESC LIMIT :n"
    with engine.connect() as conn:
        return [_public(dict(r._mapping)) for r in conn.execute(text(sql), params)]


def get_request(engine: Engine, request_id: str) -> list[dict]:
    found = list_requests(engine, ids=request_id) if len(request_id) <= 40 else []
    if not found:
        raise Open311Error(404, f"service_request_id {request_id[:40]} not found")
    return found


def to_xml(root: str, item: str | None, value) -> bytes:
    """The spec's XML: ``<root><item>…</item>…</root>`` for lists, ``<root>…</root>`` for objects."""
    top = ET.Element(root)

    def fill(el: ET.Element, obj) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if isinstance(v, list):
                    holder = ET.SubElement(el, k)
                    for x in v:
                        fill(ET.SubElement(holder, k.rstrip("s") or k), x)
                else:
                    fill(ET.SubElement(el, k), v)
        elif obj is not None:
            el.text = str(obj).lower() if isinstance(obj, bool) else str(obj)

    for x in (value if isinstance(value, list) else [value]):
        fill(ET.SubElement(top, item) if item else top, x)
    return ('<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(top, encoding="unicode")).encode("utf-8")


#: Roles whose token may post requests (the roles that may report incidents).
WRITE_ROLES = ("admin", "dispatcher", "leader", "responder")


# More than five arguments on purpose: the spec's request fields, passed by keyword from the route.
def post_request(engine: Engine, *, api_key: str, service_code: str, lat: float | None, lon: float | None,  # noqa: PLR0913
                 description: str, address: str = "", phone: str = "", upload_dir="var/uploads",
                 categories: Sequence[str] = DEFAULT_CATEGORIES, deadlines: DeadlinePolicy | None = None) -> list[dict]:
    """POST requests: ``api_key`` must be a live token of a role that may report, covering the point
    (WGS84); ``service_code`` one of the deployment's ``categories``. The phone is kept only as a hash
    (call-back and follow code); e-mail is not kept. The request's deadlines follow ``deadlines``, as a
    staff report's; ``service_notice`` states them in China time. Refused requests write nothing; an accepted
    one is audited as the token's (``ticket_report``, the incident id) in its transaction."""
    from api.usecases.reports_public import MAX_ADDRESS, MAX_DESCRIPTION, ticket_deadlines
    from api.usecases.ticket_writes import store_ticket
    from geodata.store import auth as store
    from geodata.store.incidents import get_incident
    from geodata.store.routing import route_point

    record = store.find_token(engine, api_key) if api_key.startswith(store.TOKEN_PREFIX) and len(api_key) < 200 else None
    if record is None or record.role not in WRITE_ROLES:
        raise Open311Error(403, "api_key missing, invalid or of a role that may not report")
    codes = service_codes(categories)
    if service_code not in codes:
        raise Open311Error(400, f"service_code {service_code[:20]!r} is not one of this endpoint's services "
                                "(see services.json)")
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise Open311Error(400, "lat and long (WGS84 degrees) are required")
    if not description.strip() or len(description) > MAX_DESCRIPTION or len(address) > MAX_ADDRESS:
        raise Open311Error(400, f"description is required (at most {MAX_DESCRIPTION} characters)")
    with engine.connect() as conn:
        route = route_point(conn, lon, lat)
        scope = store.expand_regions(engine, list(record.regions)) if store.ALL_REGIONS not in record.regions else None
    if route["grid_code"] is None or (scope is not None and route["grid_code"] not in scope.grids):
        raise Open311Error(400, "the location lies outside the grids this api_key covers")
    who = {"token_id": record.token_id, "role": record.role, "member_id": record.member_id}
    made = store_ticket(engine, who, "open311", lon=lon, lat=lat, category=codes[service_code],
                        description=description.strip(), address=address.strip() or None, phone=phone or None,
                        upload_dir=upload_dir, **ticket_deadlines(deadlines))
    notice = due_text(get_incident(engine, made["incident_id"]))
    return [{"service_request_id": made["ticket"], "service_notice": notice, "account_id": ""}]
