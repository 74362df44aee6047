"""Incidents in PostGIS: reported with deadline and proposed responders, moved through their life cycle.

An incident is routed to its grid/community/street (:mod:`geodata.store.routing`), gets its
response kind and deadline (``gridmap.dispatch``), and proposed responders escalating grid →
community → street (吹哨报到). Every step of ``gridmap.dispatch.TRANSITIONS`` runs under a row
lock and is written to ``incident_events``. Coordinates WGS84 degrees; distances metres.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from geodata.jsonenc import dumps
from geodata.store.holidays import load_calendar
from geodata.store.nearest import POINT_SQL
from geodata.store.partitions import ensure_street_partitions, street_of_region
from geodata.store.routing import PROPOSE_K, propose, route_point
from gridmap import dispatch as rules
from gridmap.cells import points_to_cells, to_signed
from gridmap.contract import H3_POINT_RES, SERVICE_RADIUS_M
from gridmap.deadlines import COMPLETE, RESPOND, DeadlineRules, incident_lights


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


_INCIDENT_COLS = ("incident_id, category, level, status, required_skill, reported_at, deadline_at, respond_due_at, "
                  "grid_code, "
                  "community_code, street_code, assigned_member_id, escalation_level, escalated, rating, source, "
                  "response_kind, assigned_at, accepted_at, closed_at, proposed, ST_X(geom) AS lon, ST_Y(geom) AS lat")


def _event(conn: Connection, incident_id: str, action: str, from_status: str | None, to_status: str,
           member_id: str | None = None, detail: dict | None = None, at: datetime | None = None) -> None:
    conn.execute(text("INSERT INTO incident_events (incident_id, at, action, from_status, to_status, member_id, detail) "
                      "VALUES (:i, COALESCE(:at, now()), :a, :f, :t, :m, CAST(:d AS jsonb))"),
                 {"i": incident_id, "at": at, "a": action, "f": from_status, "t": to_status, "m": member_id,
                  "d": dumps(detail) if detail is not None else None})


def proposal_json(cands: list[dict]) -> list[dict]:
    return [{"member_id": c["member_id"], "kind": c["kind"], "grid_code": c["grid_code"],
             "distance_m": round(float(c["distance_m"]), 2)} for c in cands]


# More than ten arguments on purpose: an incident's fields, passed by keyword from the routes and the CLI.
def create_incident(engine: Engine, *, lon: float, lat: float, category: str, reported_at: datetime | None = None,  # noqa: PLR0913
                    level: int | None = None, required_skill: str | None = None, kind: str | None = None,
                    incident_id: str | None = None, source: str | None = None,
                    calendar: rules.WorkCalendar | None = None, k: int = PROPOSE_K,
                    radius_m: float = SERVICE_RADIUS_M, deadline_rules: DeadlineRules | None = None) -> dict:
    """Record a reported incident (一键上报) at a WGS84 point and propose responders (智能分派).

    The incident is routed to its grid/community/street, gets its response kind and two deadlines
    by ``deadline_rules`` (default the policy: 接单 ``respond_due_at`` 24 h; 办结 ``deadline_at``
    ordinary 24 h, complex 3 working days by ``calendar`` merged with the ``holidays`` table), and
    the nearest suitable responders, escalating when the grid has none within ``radius_m`` metres.
    Returns the stored incident (see :func:`get_incident`) with ``proposed`` filled.
    """
    reported_at = rules.to_local(reported_at or datetime.now(UTC))
    rkind = rules.response_kind(category, level, kind)
    incident_id = incident_id or f"INC-{reported_at:%Y%m%d}-{uuid.uuid4().hex[:10]}"
    h3 = int(to_signed(points_to_cells([lon], [lat], H3_POINT_RES))[0])
    with engine.begin() as conn:
        respond_due, due = clock_dues(deadline_rules, work_calendar(conn, calendar), reported_at, category, rkind)
        route = route_point(conn, lon, lat)
        ensure_street_partitions(conn, [route["street_code"]], ("incidents",))  # a street's first incident (0014)
        level_reached, cands = propose(conn, lon, lat, route, skill=required_skill, k=k, radius_m=radius_m)
        proposed = proposal_json(cands)
        conn.execute(text(
            "INSERT INTO incidents (incident_id, category, level, status, required_skill, reported_at, deadline_at, "
            "respond_due_at, grid_code, community_code, street_code, escalation_level, escalated, source, response_kind, "
            "proposed, h3, geom) VALUES (:id, :cat, :lvl, 'reported', :skill, :rep, :due, :rdue, :g, :c, :s, :esc, :escd, "
            ":src, :rk, "
            "CAST(:prop AS jsonb), :h3, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"),
            {"id": incident_id, "cat": category, "lvl": level, "skill": required_skill, "rep": reported_at,
             "due": due, "rdue": respond_due, "g": route["grid_code"], "c": route["community_code"], "s": route["street_code"],
             "esc": level_reached, "escd": level_reached not in (None, "grid"), "src": source, "rk": rkind,
             "prop": dumps(proposed), "h3": h3, "lon": float(lon), "lat": float(lat)})
        _event(conn, incident_id, "report", None, rules.REPORTED,
               detail={"escalation_level": level_reached, "proposed": [p["member_id"] for p in proposed]},
               at=reported_at)
        return get_row(conn, incident_id)


def work_calendar(conn: Connection, calendar: rules.WorkCalendar | None = None) -> rules.WorkCalendar:
    """The working-day calendar deadlines count by: the ``holidays`` table merged with ``calendar``
    (the deployment's holiday file, if any)."""
    stored = load_calendar(conn)
    return stored.merged(calendar) if calendar is not None else stored


def clock_dues(deadline_rules: DeadlineRules | None, calendar: rules.WorkCalendar, reported_at: datetime,
               category: str | None, kind: str) -> tuple[datetime, datetime]:
    """(接单 ``respond_due_at``, 办结 ``deadline_at``) of an incident reported at ``reported_at`` (CST when
    naive), by ``deadline_rules`` (default the policy) and ``calendar``. Every way an incident is born
    (staff report, import, resident's ticket, Open311) computes its two deadlines here."""
    windows = deadline_rules or DeadlineRules()
    return (windows.due(RESPOND, reported_at, category, kind, calendar),
            windows.due(COMPLETE, reported_at, category, kind, calendar))


def get_row(conn: Connection, incident_id: str, lock: bool = False) -> dict:
    row = conn.execute(text(f"SELECT {_INCIDENT_COLS} FROM incidents WHERE incident_id = :i"
                            + (" FOR UPDATE" if lock else "")), {"i": incident_id}).first()
    if row is None:
        raise NotFound(f"no incident {incident_id}")
    return dict(row._mapping)


def get_incident(engine: Engine, incident_id: str) -> dict:
    """One incident as a dict (codes, status, times, ``proposed`` responders, ``lon``/``lat``); NotFound if none."""
    with engine.connect() as conn:
        return get_row(conn, incident_id)


def incident_events(engine: Engine, incident_id: str) -> list[dict]:
    """The life-cycle trail of an incident, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT event_id, at, action, from_status, to_status, member_id, detail "
                                 "FROM incident_events WHERE incident_id = :i ORDER BY event_id"), {"i": incident_id})
        return [dict(r._mapping) for r in rows]


def transition(engine: Engine, incident_id: str, action: str, *, member_id: str | None = None,  # noqa: PLR0913 — keyword-only, one per action
               rating: int | None = None, acting_member: str | None = None, at: datetime | None = None,
               radius_m: float = SERVICE_RADIUS_M, within: Collection[str] | None = None,
               escalation: dict | None = None, note: str | None = None, photos: list[dict] | None = None) -> dict:
    """Apply one life-cycle action (``assign``, ``accept``, ``claim``, ``close``, ``rate``) under a row lock.

    Parameters
    ----------
    member_id : for ``assign``, the responder; when None the first proposed responder who is still
        suitable is chosen afresh (same escalation as at report time).
    rating : for ``rate``, 1–5.
    acting_member : for ``accept``/``close`` by a responder: must be the assigned member; for
        ``claim`` (接单 of an unassigned incident) the member taking it. Two members claiming at once:
        the row lock lets the first through, the second finds it accepted (IllegalTransition → 409).
    note, photos : a result or progress note and stored photos (``{"path", "sha256"}``), kept in the
        event's detail (the close note 办结说明).
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
        inc = get_row(conn, incident_id, lock=True)
        new = rules.next_state(inc["status"], action)
        sets: dict = {}
        detail: dict = {}
        now = at or datetime.now(UTC)
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
        elif action == "claim":
            if inc["assigned_member_id"] is not None or acting_member is None:
                raise rules.IllegalTransition(inc["status"], action)
            sets = {"assigned_member_id": acting_member, "assigned_at": now, "accepted_at": now}
            who = acting_member
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
        if note:
            detail["note"] = note
        if photos:
            detail["photos"] = list(photos)
        assign = ", ".join(f"{c} = :{c}" for c in sets)
        conn.execute(text(f"UPDATE incidents SET status = :new, {assign}, updated_at = now() WHERE incident_id = :i"),
                     {"new": new, "i": incident_id, **sets})
        _event(conn, incident_id, action, inc["status"], new, member_id=who, detail=detail or None, at=now)
        return get_row(conn, incident_id)


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
    assert m is not None  # a missing member raised above (NotFound or Unavailable)
    widened = {**escalation, "member_grid": m.grid_code} if outside and escalation else None
    return member_id, widened


def with_light(inc: dict, at: datetime) -> dict:
    """The incident with the 红黄绿灯 lights of its two clocks at ``at``: ``respond_light`` (接单, stops
    at ``accepted_at``) and ``complete_light`` (办结, stops at ``closed_at``); ``light`` is the completion
    light as before. None without a deadline, or when a clock stopped at an unknown time."""
    out = {**inc, **incident_lights(inc, at)}
    out["light"] = out["complete_light"]
    return out


def list_incidents(engine: Engine, region: str | None = None, light: str | None = None,
                   status: str | None = None, open_only: bool = False, at: datetime | None = None,
                   limit: int = 1000) -> list[dict]:
    """Incidents in a region (a grid, community or street code; None = all), newest first, each with
    its light at ``at`` (default now); ``light`` keeps only incidents of that light."""
    where: list[str] = []
    params: dict[str, object] = {"limit": int(limit)}
    if region:
        where.append("(grid_code = :r OR community_code = :r OR street_code = :r)")
        params["r"] = region
        with engine.connect() as conn:
            street = street_of_region(conn, region)
        if street is not None:  # reads one street partition (and the default one), 0014
            where.append("(street_code = ANY(:streets) OR street_code IS NULL)")
            params["streets"] = [street]
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
    at = at or datetime.now(UTC)
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
            f"SELECT {_INCIDENT_COLS}, geom::geography <-> {POINT_SQL} AS distance_m FROM incidents "
            "WHERE assigned_member_id = :m AND status = ANY(:open) "
            f"ORDER BY geom::geography <-> {POINT_SQL}, incident_id COLLATE \"C\" LIMIT :limit"),
            {"m": member_id, "open": list(rules.OPEN_STATES), "lon": float(lon), "lat": float(lat),
             "limit": int(limit)})
        at = at or datetime.now(UTC)
        return [with_light(dict(r._mapping), at) for r in rows]


def add_progress_note(engine: Engine, incident_id: str, member_id: str, note: str,
                      photos: list[dict] | None = None, at: datetime | None = None) -> dict:
    """A progress note (处置进展) of the member holding an accepted incident, stored as a ``note``
    event (the state does not change). Raises NotFound, WrongMember, IllegalTransition (not accepted)."""
    with engine.begin() as conn:
        inc = get_row(conn, incident_id, lock=True)
        if inc["assigned_member_id"] != member_id:
            raise WrongMember(f"incident {incident_id} is assigned to another responder")
        if inc["status"] != rules.ACCEPTED:
            raise rules.IllegalTransition(inc["status"], "note")
        detail = {"note": note, **({"photos": list(photos)} if photos else {})}
        _event(conn, incident_id, "note", inc["status"], inc["status"], member_id=member_id, detail=detail, at=at)
        return get_row(conn, incident_id)


def nearby_open_incidents(engine: Engine, member_id: str, lon: float | None = None, lat: float | None = None,
                          radius_m: float = SERVICE_RADIUS_M, at: datetime | None = None,
                          limit: int = 50) -> list[dict]:
    """附近事件: unassigned reported incidents a member may take, nearest first.

    Within ``radius_m`` metres (sphere) of the phone's WGS84 ``(lon, lat)``, or — without a position —
    of the member's grid polygon (0 m inside it); only incidents needing no skill or one of the
    member's skills. Each row has ``distance_m`` and its light at ``at``. NotFound for an unknown member.
    """
    with engine.connect() as conn:
        m = conn.execute(text("SELECT skills FROM members WHERE member_id = :m"), {"m": member_id}).first()
        if m is None:
            raise NotFound(f"no member {member_id}")
        if lon is not None and lat is not None:
            origin, params = POINT_SQL, {"lon": float(lon), "lat": float(lat)}
        else:
            origin = ("(SELECT COALESCE(g.geom, m.geom)::geography FROM members m LEFT JOIN grids g "
                      "ON g.grid_code = m.grid_code WHERE m.member_id = :m)")
            params = {}
        rows = conn.execute(text(
            f"SELECT {_INCIDENT_COLS}, ST_Distance(geom::geography, {origin}, false) AS distance_m FROM incidents "
            "WHERE status = 'reported' AND assigned_member_id IS NULL "
            "AND (required_skill IS NULL OR required_skill = ANY(COALESCE(:skills, ARRAY[]::text[]))) "
            f"AND ST_DWithin(geom::geography, {origin}, :radius, false) "
            "ORDER BY distance_m, incident_id COLLATE \"C\" LIMIT :limit"),
            {**params, "m": member_id, "skills": list(m.skills or []), "radius": float(radius_m),
             "limit": int(limit)})
        at = at or datetime.now(UTC)
        return [with_light(dict(r._mapping), at) for r in rows]


def member_available(engine: Engine, member_id: str) -> bool:
    """Whether a member is on duty (在岗) for nearest-responder search; NotFound for an unknown member."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT available FROM members WHERE member_id = :m"), {"m": member_id}).first()
    if row is None:
        raise NotFound(f"no member {member_id}")
    return bool(row[0]) if row[0] is not None else True


def set_available(engine: Engine, member_id: str, available: bool) -> bool:
    """在岗/离岗: set a member's availability for nearest-responder search; returns the new value."""
    with engine.begin() as conn:
        row = conn.execute(text("UPDATE members SET available = :a WHERE member_id = :m RETURNING available"),
                           {"a": bool(available), "m": member_id}).first()
    if row is None:
        raise NotFound(f"no member {member_id}")
    return bool(row[0])
