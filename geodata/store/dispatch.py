"""PostGIS queries for dispatch: nearest responders, routing a point to its grid, incidents.

- Nearest responders (就近派单) use the KNN operator ``<->`` on ``geom::geography`` with the GiST
  index of migration 0002: distances are metres on the sphere (mean radius 6,371,008.8 m, the
  same as ``gridmap.metric.haversine_m``), never degrees. ``ST_DWithin(…, false)`` (sphere) bounds
  the scan when a radius is given, in the same index scan. Ties are broken by ``member_id``
  (byte order, ``COLLATE "C"``), as ``gridmap.dispatch.rank`` does.
- Routing: a point goes to the grid covering it (a point on a shared edge to the lowest grid code;
  a point in a sliver gap to the nearest grid within ``SNAP_M`` metres), then to that grid's
  community and the community's street.
- Incidents: created with deadline and proposed responders (escalating grid → community → street,
  吹哨报到), moved through ``gridmap.dispatch.TRANSITIONS`` under a row lock, every step written
  to ``incident_events``.

All coordinates WGS84 (EPSG:4326) degrees; all distances metres.
"""

from __future__ import annotations

from collections.abc import Collection

import json
import uuid
from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime, timezone
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine

from gridmap import dispatch as rules
from gridmap.cells import points_to_cells, to_signed
from gridmap.contract import H3_POINT_RES, SERVICE_RADIUS_M

#: A point outside every grid (a sliver gap between digitised polygons) is routed to the nearest
#: grid within this many metres; farther away it stays unrouted.
SNAP_M = 50.0
#: Responders proposed for a new incident.
PROPOSE_K = 5


class NotFound(LookupError):
    """No such incident or member."""


class WrongMember(PermissionError):
    """The incident is assigned to someone else."""


class Unavailable(ValueError):
    """The chosen responder is not available (or does not exist)."""


class OutsideRegions(PermissionError):
    """The chosen responder is not (known to be) one of the caller's regions; the text says nothing
    more about them, so it cannot tell a missing member from another region's."""


#: The one text for every refused responder outside the caller's regions.
HIDDEN_MEMBER = "member {} is not a suitable responder within reach of this token"


# -- nearest responders -----------------------------------------------------------------------------

@lru_cache(maxsize=8)
def reader_engine(url: str, pool_size: int = 10) -> Engine:
    """An autocommit engine for single-statement reads on the hot path (``/responders/nearest``).

    Why not the shared engine: on this path every extra round trip to PostgreSQL costs as much as
    the KNN query itself, and the shared engine spends three per request besides the query
    (pre-ping, BEGIN, ROLLBACK). Without pre-ping a connection that died with the server fails
    once; SQLAlchemy then invalidates the whole pool, the app answers that request 503
    (``connection_invalidated``) and the next one reconnects.
    """
    return create_engine(url, isolation_level="AUTOCOMMIT", pool_size=pool_size, max_overflow=pool_size,
                         pool_pre_ping=False, pool_recycle=1800, connect_args={"connect_timeout": 5})


_POINT = "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography"


#: Extra rows fetched by the one-scan KNN query, so that ties at the k-th place can be broken by id
#: without a second scan (see :func:`nearest_responders`).
TIE_MARGIN = 8

_COLUMNS = "m.member_id, m.kind, m.grid_code, m.skills, m.available, ST_X(m.geom) AS lon, ST_Y(m.geom) AS lat"


def _conditions(skill: bool, radius: bool, pool: bool, only_available: bool) -> str:
    where = []
    if only_available:
        where.append("m.available")
    if skill:
        where.append(":skill = ANY(m.skills)")
    if radius:
        where.append(f"ST_DWithin(m.geom::geography, {_POINT}, :radius, false)")
    if pool:
        where.append("m.grid_code = ANY(:pool)")
    return " AND ".join(where) if where else "true"


def _knn_sql(skill: bool, radius: bool, pool: bool, only_available: bool) -> str:
    """One KNN index scan: the k + TIE_MARGIN nearest by ``<->`` alone (an ``ORDER BY distance,
    member_id`` would make PostgreSQL sort every matching row instead of walking the index)."""
    cond = _conditions(skill, radius, pool, only_available)
    return (f"SELECT {_COLUMNS}, m.geom::geography <-> {_POINT} AS distance_m FROM members m WHERE {cond} "
            f"ORDER BY m.geom::geography <-> {_POINT} LIMIT :kk")


def _nearest_sql(skill: bool, radius: bool, pool: bool, only_available: bool) -> str:
    """The exact ranking in two index scans, for when more than TIE_MARGIN responders tie at the
    k-th place: (1) a KNN scan finds the k-th smallest distance D; (2) an ST_DWithin scan fetches
    everyone within D (a hair more, then cut at exactly D with the same ``<->``), so every member
    tied at the k-th place is seen and the id decides among them."""
    cond = _conditions(skill, radius, pool, only_available)
    return (
        f"WITH knn AS (SELECT m.geom::geography <-> {_POINT} AS d FROM members m WHERE {cond} "
        f"ORDER BY m.geom::geography <-> {_POINT} LIMIT :k), "
        "reach AS (SELECT max(d) AS d FROM knn) "
        f"SELECT {_COLUMNS}, m.geom::geography <-> {_POINT} AS distance_m FROM members m, reach WHERE {cond} "
        f"AND ST_DWithin(m.geom::geography, {_POINT}, reach.d * (1 + 1e-9) + 1e-6, false) "
        f"AND m.geom::geography <-> {_POINT} <= reach.d "
        f"ORDER BY distance_m, m.member_id COLLATE \"C\" LIMIT :k"
    )


_FLAGS = [(s, r, p, a) for s in (False, True) for r in (False, True) for p in (False, True) for a in (False, True)]
_KNN_SQL = {f: text(_knn_sql(*f)) for f in _FLAGS}
_NEAREST_SQL = {f: text(_nearest_sql(*f)) for f in _FLAGS}


def nearest_responders(conn: Connection, lon: float, lat: float, k: int = 5, skill: str | None = None,
                       radius_m: float | None = None, pool: list[str] | None = None,
                       only_available: bool = True) -> list[dict]:
    """The ``k`` nearest suitable responders (党员 and 网格员) to a WGS84 point, nearest first.

    Parameters
    ----------
    conn : an open connection.
    lon, lat : WGS84 degrees.
    k : how many at most.
    skill : only responders with this skill tag (法律, 医疗 …).
    radius_m : only responders within this many metres (great circle).
    pool : only responders of these grid codes (escalation levels).
    only_available : leave out responders marked unavailable (default).

    Returns
    -------
    list of dict with ``member_id, kind, grid_code, skills, available, lon, lat, distance_m``
    (no name or phone: those are personal data).
    """
    flags = (skill is not None, radius_m is not None, pool is not None, only_available)
    params = {"lon": float(lon), "lat": float(lat), "k": int(k), "kk": int(k) + TIE_MARGIN}
    if skill is not None:
        params["skill"] = skill
    if radius_m is not None:
        params["radius"] = float(radius_m)
    if pool is not None:
        params["pool"] = list(pool)
    rows = [dict(r._mapping) for r in conn.execute(_KNN_SQL[flags], params)]
    # Python's str order is code-point order, the same as PostgreSQL's COLLATE "C" on UTF-8.
    rows.sort(key=lambda r: (r["distance_m"], r["member_id"]))
    if len(rows) == params["kk"] and len(rows) > k and rows[-1]["distance_m"] <= rows[k - 1]["distance_m"]:
        # More ties at the k-th place than fetched: rank them all exactly.
        return [dict(r._mapping) for r in conn.execute(_NEAREST_SQL[flags], params)]
    return rows[:k]


# -- routing a point to grid / community / street ------------------------------------------------------

def _route_joins(p: str) -> str:
    """Lateral joins routing the point expression ``p`` (geometry, SRID 4326) to rg/rc/rs."""
    return f"""
    LEFT JOIN LATERAL (
        SELECT g.grid_code, g.community_code, g.geom
        FROM grids g
        WHERE ST_DWithin(g.geom::geography, ({p})::geography, :snap, false)
        ORDER BY ST_Covers(g.geom, {p}) DESC, ST_Distance(g.geom::geography, ({p})::geography, false),
                 g.grid_code COLLATE "C"
        LIMIT 1) rg ON true
    LEFT JOIN LATERAL (
        SELECT c.code, c.street_code, c.geom
        FROM communities c
        WHERE CASE WHEN rg.community_code IS NOT NULL THEN c.code = rg.community_code
                   ELSE ST_Covers(c.geom, COALESCE(ST_PointOnSurface(rg.geom), {p})) END
        ORDER BY c.code COLLATE "C"
        LIMIT 1) rc ON true
    LEFT JOIN LATERAL (
        SELECT s.code
        FROM streets s
        WHERE CASE WHEN rc.street_code IS NOT NULL THEN s.code = rc.street_code
                   ELSE ST_Covers(s.geom, COALESCE(ST_PointOnSurface(rc.geom), {p})) END
        ORDER BY s.code COLLATE "C"
        LIMIT 1) rs ON true
    """


_ROUTE_COLUMNS = ("rg.grid_code AS grid_code, COALESCE(rg.community_code, rc.code) AS community_code, "
                  "COALESCE(rc.street_code, rs.code) AS street_code")
_ROUTE_SQL = text(f"SELECT {_ROUTE_COLUMNS} FROM (SELECT 1) one "
                  + _route_joins("ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)"))


def route_point(conn: Connection, lon: float, lat: float, snap_m: float = SNAP_M) -> dict:
    """Grid, community and street of a WGS84 point.

    The grid covering the point wins (on a shared edge the lowest ``grid_code``); a point in no
    grid goes to the nearest grid within ``snap_m`` metres. The community is the grid's
    ``community_code`` or else the community covering a point inside the grid (so every incident
    of a grid goes to the same community); the street likewise from the community. Codes are None
    where nothing matches.
    """
    row = conn.execute(_ROUTE_SQL, {"lon": float(lon), "lat": float(lat), "snap": float(snap_m)}).one()
    return dict(row._mapping)


def grids_of(conn: Connection, level: str, code: str) -> list[str]:
    """Grid codes making up a community or a street (by ``community_code``/``street_code``, else by
    where each grid's inside point lies), or ``[code]`` for a grid."""
    if level == "grid":
        return [code]
    if level == "community":
        sql = """SELECT g.grid_code FROM grids g LEFT JOIN communities c ON c.code = :code
                 WHERE g.community_code = :code
                    OR (g.community_code IS NULL AND ST_Covers(c.geom, ST_PointOnSurface(g.geom)))"""
    elif level == "street":
        sql = """WITH comm AS (
                   SELECT c.code, c.geom FROM communities c LEFT JOIN streets s ON s.code = :code
                   WHERE c.street_code = :code
                      OR (c.street_code IS NULL AND ST_Covers(s.geom, ST_PointOnSurface(c.geom))))
                 SELECT g.grid_code FROM grids g
                 WHERE g.community_code IN (SELECT code FROM comm)
                    OR (g.community_code IS NULL AND EXISTS (
                        SELECT 1 FROM comm WHERE ST_Covers(comm.geom, ST_PointOnSurface(g.geom))))"""
    else:
        raise ValueError(f"unknown level {level!r}")
    return sorted(r[0] for r in conn.execute(text(sql), {"code": code}))


def propose(conn: Connection, lon: float, lat: float, route: dict, skill: str | None = None,
            k: int = PROPOSE_K, radius_m: float = SERVICE_RADIUS_M,
            within: Collection[str] | None = None) -> tuple[str | None, list[dict]]:
    """Suitable responders for an incident, escalating grid → community → street (吹哨报到).

    Grid level: available responders of the incident's grid within ``radius_m`` metres. Community
    and street levels: available responders of any grid of the community / street, nearest first
    (the area bounds the search, not the radius). ``within`` (grid codes) keeps the search inside a
    caller's regions. Returns ``(level reached, responders)``.
    """
    codes = {"grid": route.get("grid_code"), "community": route.get("community_code"),
             "street": route.get("street_code")}

    def find(level):
        code = codes[level]
        if code is None:
            return None
        pool = grids_of(conn, level, code)
        if within is not None:
            pool = [g for g in pool if g in within]
        return nearest_responders(conn, lon, lat, k=k, skill=skill, pool=pool,
                                  radius_m=radius_m if level == "grid" else None)

    return rules.escalate(find)


# -- holiday calendar ------------------------------------------------------------------------------------

def read_calendar_file(path) -> rules.WorkCalendar:
    """A holiday calendar file (see ``gridmap.dispatch.parse_calendar``); ValueError names the bad line."""
    p = Path(path)
    return rules.parse_calendar(p.read_text(encoding="utf-8-sig").splitlines(), source=p.name)


def load_calendar(conn: Connection) -> rules.WorkCalendar:
    """The calendar stored in the ``holidays`` table."""
    rows = conn.execute(text("SELECT day, kind FROM holidays")).all()
    return rules.WorkCalendar(frozenset(d for d, k in rows if k == "holiday"),
                              frozenset(d for d, k in rows if k == "workday"))


def save_calendar(engine: Engine, calendar: rules.WorkCalendar, names: dict[date, str] | None = None) -> int:
    """Upsert a calendar into the ``holidays`` table; returns the number of days written."""
    names = names or {}
    rows = [{"d": d, "k": "holiday", "n": names.get(d)} for d in sorted(calendar.holidays)]
    rows += [{"d": d, "k": "workday", "n": names.get(d)} for d in sorted(calendar.workdays)]
    if rows:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO holidays (day, kind, name) VALUES (:d, :k, :n) "
                              "ON CONFLICT (day) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name"), rows)
    return len(rows)


# -- incidents ---------------------------------------------------------------------------------------------

_INCIDENT_COLS = ("incident_id, category, level, status, required_skill, reported_at, deadline_at, grid_code, "
                  "community_code, street_code, assigned_member_id, escalation_level, escalated, rating, source, "
                  "response_kind, assigned_at, accepted_at, closed_at, proposed, ST_X(geom) AS lon, ST_Y(geom) AS lat")


def _event(conn: Connection, incident_id: str, action: str, from_status: str | None, to_status: str,
           member_id: str | None = None, detail: dict | None = None, at: datetime | None = None) -> None:
    conn.execute(text("INSERT INTO incident_events (incident_id, at, action, from_status, to_status, member_id, detail) "
                      "VALUES (:i, COALESCE(:at, now()), :a, :f, :t, :m, CAST(:d AS jsonb))"),
                 {"i": incident_id, "at": at, "a": action, "f": from_status, "t": to_status, "m": member_id,
                  "d": json.dumps(detail, ensure_ascii=False) if detail is not None else None})


def _proposal_json(cands: list[dict]) -> list[dict]:
    return [{"member_id": c["member_id"], "kind": c["kind"], "grid_code": c["grid_code"],
             "distance_m": round(float(c["distance_m"]), 2)} for c in cands]


def create_incident(engine: Engine, *, lon: float, lat: float, category: str, reported_at: datetime | None = None,
                    level: int | None = None, required_skill: str | None = None, kind: str | None = None,
                    incident_id: str | None = None, source: str | None = None,
                    calendar: rules.WorkCalendar | None = None, k: int = PROPOSE_K,
                    radius_m: float = SERVICE_RADIUS_M) -> dict:
    """Record a reported incident (一键上报) at a WGS84 point and propose responders (智能分派).

    The incident is routed to its grid/community/street, gets its response kind and deadline
    (ordinary 24 h; complex 3 working days by ``calendar`` merged with the ``holidays`` table), and
    the nearest suitable responders, escalating when the grid has none within ``radius_m`` metres.
    Returns the stored incident (see :func:`get_incident`) with ``proposed`` filled.
    """
    reported_at = rules.to_local(reported_at or datetime.now(timezone.utc))
    rkind = rules.response_kind(category, level, kind)
    incident_id = incident_id or f"INC-{reported_at:%Y%m%d}-{uuid.uuid4().hex[:10]}"
    h3 = int(to_signed(points_to_cells([lon], [lat], H3_POINT_RES))[0])
    with engine.begin() as conn:
        cal = load_calendar(conn)
        if calendar is not None:
            cal = cal.merged(calendar)
        due = rules.deadline(reported_at, rkind, cal)
        route = route_point(conn, lon, lat)
        level_reached, cands = propose(conn, lon, lat, route, skill=required_skill, k=k, radius_m=radius_m)
        proposed = _proposal_json(cands)
        conn.execute(text(
            "INSERT INTO incidents (incident_id, category, level, status, required_skill, reported_at, deadline_at, "
            "grid_code, community_code, street_code, escalation_level, escalated, source, response_kind, proposed, h3, geom) "
            "VALUES (:id, :cat, :lvl, 'reported', :skill, :rep, :due, :g, :c, :s, :esc, :escd, :src, :rk, "
            "CAST(:prop AS jsonb), :h3, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"),
            {"id": incident_id, "cat": category, "lvl": level, "skill": required_skill, "rep": reported_at,
             "due": due, "g": route["grid_code"], "c": route["community_code"], "s": route["street_code"],
             "esc": level_reached, "escd": level_reached not in (None, "grid"), "src": source, "rk": rkind,
             "prop": json.dumps(proposed, ensure_ascii=False), "h3": h3, "lon": float(lon), "lat": float(lat)})
        _event(conn, incident_id, "report", None, rules.REPORTED,
               detail={"escalation_level": level_reached, "proposed": [p["member_id"] for p in proposed]},
               at=reported_at)
        return _get(conn, incident_id)


def _get(conn: Connection, incident_id: str, lock: bool = False) -> dict:
    row = conn.execute(text(f"SELECT {_INCIDENT_COLS} FROM incidents WHERE incident_id = :i"
                            + (" FOR UPDATE" if lock else "")), {"i": incident_id}).first()
    if row is None:
        raise NotFound(f"no incident {incident_id}")
    return dict(row._mapping)


def get_incident(engine: Engine, incident_id: str) -> dict:
    """One incident as a dict (codes, status, times, ``proposed`` responders, ``lon``/``lat``); NotFound if none."""
    with engine.connect() as conn:
        return _get(conn, incident_id)


def incident_events(engine: Engine, incident_id: str) -> list[dict]:
    """The life-cycle trail of an incident, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT event_id, at, action, from_status, to_status, member_id, detail "
                                 "FROM incident_events WHERE incident_id = :i ORDER BY event_id"), {"i": incident_id})
        return [dict(r._mapping) for r in rows]


def transition(engine: Engine, incident_id: str, action: str, *, member_id: str | None = None,
               rating: int | None = None, acting_member: str | None = None, at: datetime | None = None,
               radius_m: float = SERVICE_RADIUS_M, within: Collection[str] | None = None,
               escalation: dict | None = None) -> dict:
    """Apply one life-cycle action (``assign``, ``accept``, ``close``, ``rate``) under a row lock.

    Parameters
    ----------
    member_id : for ``assign``, the responder; when None the first proposed responder who is still
        suitable is chosen afresh (same escalation as at report time).
    rating : for ``rate``, 1–5.
    acting_member : for ``accept``/``close`` by a responder: must be the assigned member.
    at : when it happened (default now).
    within : for ``assign``, the grid codes of the caller's regions (None: everywhere). A responder
        outside them is refused (OutsideRegions) unless ``escalation`` is given.
    escalation : for ``assign`` outside ``within`` (吹哨报到): who widens the search and why,
        e.g. ``{"reason": …, "token_id": …, "role": …}``; recorded as an ``escalate`` event.

    Raises
    ------
    NotFound, gridmap.dispatch.IllegalTransition (→ HTTP 409), WrongMember (→ 403),
    Unavailable (→ 409), OutsideRegions (→ 403), ValueError for a bad rating.
    """
    if action == "rate":
        rating = rules.check_rating(rating)
    with engine.begin() as conn:
        inc = _get(conn, incident_id, lock=True)
        new = rules.next_state(inc["status"], action)
        sets: dict = {}
        detail: dict = {}
        now = at or datetime.now(timezone.utc)
        who = None
        if action == "assign":
            member_id, widened = _choose_member(conn, inc, member_id, radius_m, within, escalation)
            sets = {"assigned_member_id": member_id, "assigned_at": now}
            who = member_id
            if widened is not None:
                sets["escalated"] = True
                _event(conn, incident_id, "escalate", inc["status"], inc["status"], member_id=member_id,
                       detail=widened, at=now)
                detail["escalation"] = widened
            if inc["assigned_member_id"] and inc["assigned_member_id"] != member_id:
                detail["reassigned_from"] = inc["assigned_member_id"]
        else:
            if acting_member is not None and action in ("accept", "close") and acting_member != inc["assigned_member_id"]:
                raise WrongMember(f"incident {incident_id} is assigned to another responder")
            who = acting_member or inc["assigned_member_id"]
            if action == "accept":
                sets = {"accepted_at": now}
            elif action == "close":
                sets = {"closed_at": now}
            else:
                sets = {"rating": rating}
                detail["rating"] = rating
        assign = ", ".join(f"{c} = :{c}" for c in sets)
        conn.execute(text(f"UPDATE incidents SET status = :new, {assign}, updated_at = now() WHERE incident_id = :i"),
                     {"new": new, "i": incident_id, **sets})
        _event(conn, incident_id, action, inc["status"], new, member_id=who, detail=detail or None, at=now)
        return _get(conn, incident_id)


def _choose_member(conn: Connection, inc: dict, member_id: str | None, radius_m: float,
                   within: Collection[str] | None, escalation: dict | None) -> tuple[str, dict | None]:
    """The responder an ``assign`` gives the incident to, and the escalation record when the choice
    lies outside ``within`` (None otherwise). Facts about a responder outside ``within`` (missing,
    unavailable, lacking the skill) never reach the error text: they all read :data:`HIDDEN_MEMBER`."""
    if member_id is None:
        _, cands = propose(conn, inc["lon"], inc["lat"], inc, skill=inc["required_skill"], k=1, radius_m=radius_m,
                           within=None if escalation else within)
        if not cands:
            raise Unavailable("no suitable responder is available at grid, community or street level")
        member_id = cands[0]["member_id"]
    m = conn.execute(text("SELECT available, skills, grid_code FROM members WHERE member_id = :m"),
                     {"m": member_id}).first()
    outside = within is not None and (m is None or m.grid_code not in within)
    if outside and escalation is None:
        raise OutsideRegions(HIDDEN_MEMBER.format(member_id))
    if m is None:
        problem = f"no member {member_id}"
    elif not m.available:
        problem = f"member {member_id} is not available"
    elif not rules.has_skill(m.skills, inc["required_skill"]):
        problem = f"member {member_id} lacks the skill {inc['required_skill']}"
    else:
        problem = None
    if problem and outside:
        raise NotFound(HIDDEN_MEMBER.format(member_id))
    if problem:
        raise Unavailable(problem)
    widened = {**escalation, "member_grid": m.grid_code} if outside and escalation else None
    return member_id, widened


def with_light(inc: dict, at: datetime) -> dict:
    """The incident with its 红黄绿灯 ``light`` at ``at`` (None without a deadline, or closed at an
    unknown time)."""
    out = dict(inc)
    closed = inc.get("status") in (rules.CLOSED, rules.RATED)
    if inc.get("deadline_at") is None or (closed and inc.get("closed_at") is None):
        out["light"] = None
    else:
        out["light"] = rules.light(inc["reported_at"], inc["deadline_at"], at, inc.get("closed_at"))
    return out


def list_incidents(engine: Engine, region: str | None = None, light: str | None = None,
                   status: str | None = None, open_only: bool = False, at: datetime | None = None,
                   limit: int = 1000) -> list[dict]:
    """Incidents in a region (a grid, community or street code; None = all), newest first, each with
    its light at ``at`` (default now); ``light`` keeps only incidents of that light."""
    where, params = [], {"limit": int(limit)}
    if region:
        where.append("(grid_code = :r OR community_code = :r OR street_code = :r)")
        params["r"] = region
    if status:
        where.append("status = :st")
        params["st"] = status
    if open_only:
        where.append("status = ANY(:open)")
        params["open"] = list(rules.OPEN_STATES)
    if light in (rules.RED, rules.YELLOW, rules.GREEN):
        where.append("deadline_at IS NOT NULL AND (closed_at IS NOT NULL OR status = ANY(:open2))")
        params["open2"] = list(rules.OPEN_STATES)
    sql = (f"SELECT {_INCIDENT_COLS} FROM incidents " + ("WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY reported_at DESC, incident_id")
    at = at or datetime.now(timezone.utc)
    out = []
    with engine.connect() as conn:
        for r in conn.execute(text(sql), params):
            inc = with_light(dict(r._mapping), at)
            if light is None or inc["light"] == light:
                out.append(inc)
                if len(out) >= limit:
                    break
    return out


def member_incidents(engine: Engine, member_id: str, lon: float | None = None, lat: float | None = None,
                     at: datetime | None = None, limit: int = 100) -> list[dict]:
    """Open incidents assigned to a responder, nearest first from ``(lon, lat)`` (default: the
    member's own location), with ``distance_m`` (metres, sphere) and the light at ``at``."""
    with engine.connect() as conn:
        if lon is None or lat is None:
            row = conn.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM members WHERE member_id = :m"),
                               {"m": member_id}).first()
            if row is None:
                raise NotFound(f"no member {member_id}")
            lon, lat = row
        rows = conn.execute(text(
            f"SELECT {_INCIDENT_COLS}, geom::geography <-> {_POINT} AS distance_m FROM incidents "
            "WHERE assigned_member_id = :m AND status = ANY(:open) "
            f"ORDER BY geom::geography <-> {_POINT}, incident_id COLLATE \"C\" LIMIT :limit"),
            {"m": member_id, "open": list(rules.OPEN_STATES), "lon": float(lon), "lat": float(lat),
             "limit": int(limit)})
        at = at or datetime.now(timezone.utc)
        return [with_light(dict(r._mapping), at) for r in rows]


def member_households(engine: Engine, member_id: str) -> list[dict]:
    """A responder's linked households (包片联户) of the current link run, in visiting order.

    Rows carry the households' personal data (``name``/``phone``/``id_number``): the caller must
    mask or audit them (``api.auth.present_pii``) and never log them.
    """
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT h.household_id, h.grid_code, h.size, h.tags, h.name, h.phone, h.id_number, "
            "ST_X(h.geom) AS lon, ST_Y(h.geom) AS lat, l.distance_m, l.visit_order "
            "FROM links l JOIN link_runs r ON r.run_id = l.run_id AND r.is_current "
            "JOIN households h ON h.household_id = l.household_id "
            "WHERE l.member_id = :m ORDER BY l.visit_order NULLS LAST, h.household_id COLLATE \"C\""),
            {"m": member_id})
        return [dict(r._mapping) for r in rows]


# -- bulk import -------------------------------------------------------------------------------------------

@dataclass
class IncidentImport:
    """What :func:`import_incidents` did."""

    rows: int
    inserted: int = 0
    updated: int = 0
    routed: int = 0
    unrouted: int = 0
    proposed: int = 0


def _local_times(values) -> list[datetime]:
    out = []
    for v in values:
        t = pd.Timestamp(v)
        if pd.isna(t):
            raise ValueError("reported_at is missing")
        out.append(rules.to_local(t.to_pydatetime()))
    return out


def import_incidents(engine: Engine, gdf: gpd.GeoDataFrame, calendar: rules.WorkCalendar | None = None,
                     snap_m: float = SNAP_M, k: int = PROPOSE_K, radius_m: float = SERVICE_RADIUS_M) -> IncidentImport:
    """Import incidents (``geodata.io.read_layer(..., "incidents")``) routed to grids, with deadlines.

    In one transaction: rows are upserted by ``incident_id``; each is routed to its grid, community
    and street in PostGIS (:func:`route_point` rules); ``status`` is mapped onto the life cycle
    (``网格员关闭`` → closed); ``reported_at`` without a zone is China Standard Time; the deadline
    follows the response kind (category/level); open incidents get proposed responders.
    """
    n = len(gdf)
    res = IncidentImport(rows=n)
    if n == 0:
        return res
    reported = _local_times(gdf["reported_at"])
    cats = [str(c) for c in gdf["category"]]
    levels = [None if v is None or pd.isna(v) else int(v) for v in
              (gdf["level"] if "level" in gdf.columns else [None] * n)]
    statuses = [rules.normalise_status(None if s is None or (isinstance(s, float) and np.isnan(s)) else str(s))
                for s in (gdf["status"] if "status" in gdf.columns else [None] * n)]
    skills = [None if s is None or (isinstance(s, float) and np.isnan(s)) else str(s)
              for s in (gdf["required_skill"] if "required_skill" in gdf.columns else [None] * n)]
    sources = [None if s is None or (isinstance(s, float) and np.isnan(s)) else str(s)
               for s in (gdf["source"] if "source" in gdf.columns else [None] * n)]
    kinds = [rules.response_kind(c, lv) for c, lv in zip(cats, levels)]
    lon, lat = gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy()
    h3 = to_signed(points_to_cells(lon, lat, H3_POINT_RES)).tolist()
    wkb = shapely.to_wkb(shapely.set_srid(gdf.geometry.values, 4326), hex=True, include_srid=True)
    with engine.begin() as conn:
        cal = load_calendar(conn)
        if calendar is not None:
            cal = cal.merged(calendar)
        dues = [rules.deadline(r, kd, cal) for r, kd in zip(reported, kinds)]
        cur_raw = conn.connection.driver_connection
        with cur_raw.cursor() as cur:
            cur.execute("CREATE TEMP TABLE _stage_incidents (incident_id text, category text, level int, status text, "
                        "required_skill text, reported_at timestamptz, deadline_at timestamptz, source text, "
                        "response_kind text, h3 bigint, geom geometry(Point, 4326)) ON COMMIT DROP")
            with cur.copy("COPY _stage_incidents FROM STDIN") as cp:
                for row in zip([str(i) for i in gdf["incident_id"]], cats, levels, statuses, skills, reported, dues,
                               sources, kinds, h3, wkb):
                    cp.write_row(row)
        cols = ("category, level, status, required_skill, reported_at, deadline_at, source, response_kind, h3, geom, "
                "grid_code, community_code, street_code")
        rows = conn.execute(text(
            f"INSERT INTO incidents (incident_id, {cols}) "
            f"SELECT s.incident_id, s.category, s.level, s.status, s.required_skill, s.reported_at, s.deadline_at, "
            f"s.source, s.response_kind, s.h3, s.geom, {_ROUTE_COLUMNS} FROM _stage_incidents s "
            + _route_joins("s.geom")
            + " ON CONFLICT (incident_id) DO UPDATE SET "
            + ", ".join(f"{c} = EXCLUDED.{c}" for c in (c.strip() for c in cols.split(",")))
            + ", updated_at = now() RETURNING incident_id, (xmax = 0) AS inserted, grid_code, status"),
            {"snap": float(snap_m)}).all()
        res.inserted = sum(1 for r in rows if r.inserted)
        res.updated = len(rows) - res.inserted
        res.routed = sum(1 for r in rows if r.grid_code is not None)
        res.unrouted = len(rows) - res.routed
        new_ids = [r.incident_id for r in rows if r.inserted]
        if new_ids:
            conn.execute(text("INSERT INTO incident_events (incident_id, at, action, from_status, to_status, detail) "
                              "SELECT incident_id, reported_at, 'import', NULL, status, "
                              "jsonb_build_object('source', source) FROM incidents WHERE incident_id = ANY(:ids)"),
                         {"ids": new_ids})
        # Open incidents get proposals now, as if reported through the API.
        for r in rows:
            if r.status != rules.REPORTED:
                continue
            inc = _get(conn, r.incident_id)
            lv, cands = propose(conn, inc["lon"], inc["lat"], inc, skill=inc["required_skill"], k=k, radius_m=radius_m)
            conn.execute(text("UPDATE incidents SET escalation_level = :lv, escalated = :e, proposed = CAST(:p AS jsonb) "
                              "WHERE incident_id = :i"),
                         {"lv": lv, "e": lv not in (None, "grid"), "i": r.incident_id,
                          "p": json.dumps(_proposal_json(cands), ensure_ascii=False)})
            res.proposed += 1
    return res
