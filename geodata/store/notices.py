"""Deadline reminders and in-app notices (站内提醒) in PostGIS.

A reminder run looks at every open incident, finds the clocks (``gridmap.deadlines``: 接单 until
taken, 办结 until closed) that have entered yellow or red, and — once per (incident, clock, light),
kept in ``incident_reminders`` — writes notices for the holder (``member_id``) and the dispatchers of
the incident's region (``region_code``). A red clock also escalates the incident one level
(吹哨报到: grid → community → street), recorded as an ``escalate`` event. One transaction: a run
that fails marks nothing; two runs at once never mark twice (rows locked, SKIP LOCKED).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from geodata.jsonenc import dumps
from gridmap import deadlines as dl
from gridmap import dispatch as rules

_LEVEL_CODE = {"grid": "grid_code", "community": "community_code", "street": "street_code"}
_LIGHT_WORDS = {"yellow": "即将超时（黄灯）", "red": "已超时（红灯）"}
_LEVEL_WORDS = {"grid": "网格", "community": "社区", "street": "街道"}


def entering(inc: dict, at: datetime) -> list[tuple[str, str]]:
    """The (clock, light) pairs of an open incident that are yellow or red at ``at``: the response clock
    while nobody has taken it, the completion clock while it is open."""
    lights = dl.incident_lights(inc, at)
    clocks = [dl.RESPOND] if inc["status"] in (rules.REPORTED, rules.ASSIGNED) else []
    clocks.append(dl.COMPLETE)
    return [(c, str(lights[f"{c}_light"])) for c in clocks if lights[f"{c}_light"] in (rules.YELLOW, rules.RED)]


def next_level(inc: dict) -> str | None:
    """The level above the incident's current one (吹哨报到), None at the street or without a code there."""
    levels = rules.ESCALATION_LEVELS
    current = inc.get("escalation_level") or "grid"
    i = levels.index(current) if current in levels else 0
    for lv in levels[i + 1:]:
        if inc.get(_LEVEL_CODE[lv]):
            return lv
    return None


def _mark(conn: Connection, incident_id: str, clock: str, light: str, at: datetime) -> bool:
    row = conn.execute(text("INSERT INTO incident_reminders (incident_id, clock, light, marked_at) "
                            "VALUES (:i, :c, :l, :at) ON CONFLICT DO NOTHING RETURNING incident_id"),
                       {"i": incident_id, "c": clock, "l": light, "at": at}).first()
    return row is not None


def _notice(conn: Connection, inc: dict, kind: str, message: str, at: datetime, member_id: str | None = None,
            region_code: str | None = None) -> dict:
    row = conn.execute(text(
        "INSERT INTO notices (created_at, incident_id, member_id, region_code, kind, message) "
        "VALUES (:at, :i, :m, :r, :k, :msg) RETURNING notice_id"),
        {"at": at, "i": inc["incident_id"], "m": member_id, "r": region_code, "k": kind, "msg": message}).scalar_one()
    return {"notice_id": row, "incident_id": inc["incident_id"], "member_id": member_id, "region_code": region_code,
            "kind": kind, "message": message, "created_at": at}


def _escalate(conn: Connection, inc: dict, clock: str, at: datetime) -> dict | None:
    level = next_level(inc)
    if level is None:
        return None
    code = inc[_LEVEL_CODE[level]]
    conn.execute(text("UPDATE incidents SET escalation_level = :lv, escalated = true, updated_at = now() "
                      "WHERE incident_id = :i"), {"lv": level, "i": inc["incident_id"]})
    detail = {"reason": "overdue", "clock": clock, "from": inc.get("escalation_level") or "grid", "to": level,
              "region_code": code}
    conn.execute(text("INSERT INTO incident_events (incident_id, at, action, from_status, to_status, member_id, "
                      "detail) VALUES (:i, :at, 'escalate', :s, :s, NULL, CAST(:d AS jsonb))"),
                 {"i": inc["incident_id"], "at": at, "s": inc["status"], "d": dumps(detail)})
    return {"level": level, "region_code": code}


def _remind(conn: Connection, inc: dict, clock: str, light: str, at: datetime) -> list[dict]:
    what = f"事件 {inc['incident_id']}（{inc['category']}）{dl.CLOCK_LABELS[clock]}{_LIGHT_WORDS[light]}"
    due = inc["respond_due_at"] if clock == dl.RESPOND else inc["deadline_at"]
    message = f"{what}，时限 {rules.to_local(due):%Y-%m-%d %H:%M}（北京时间）"
    out = []
    if inc.get("assigned_member_id"):
        out.append(_notice(conn, inc, light, message, at, member_id=inc["assigned_member_id"]))
    region = inc.get(_LEVEL_CODE.get(inc.get("escalation_level") or "grid", "grid_code")) or inc.get("grid_code")
    if region:
        out.append(_notice(conn, inc, light, message, at, region_code=region))
    if light == rules.RED:
        up = _escalate(conn, inc, clock, at)
        if up is not None:
            out.append(_notice(conn, inc, "escalate", f"{what}，已上报{_LEVEL_WORDS[up['level']]}（吹哨报到）", at,
                               region_code=up["region_code"]))
            inc["escalation_level"] = up["level"]
    return out


def run_reminders(engine: Engine, at: datetime) -> list[dict]:
    """Mark every open incident whose clocks entered yellow or red by ``at`` (once each), write the
    notices and escalate red ones one level; returns the notices written (for a webhook)."""
    from geodata.store.incidents import _INCIDENT_COLS

    written: list[dict] = []
    with engine.begin() as conn:
        rows = conn.execute(text(f"SELECT {_INCIDENT_COLS} FROM incidents WHERE status = ANY(:open) "
                                 "ORDER BY incident_id FOR UPDATE SKIP LOCKED"), {"open": list(rules.OPEN_STATES)})
        for inc in [dict(r._mapping) for r in rows]:
            for clock, light in entering(inc, at):
                if _mark(conn, inc["incident_id"], clock, light, at):
                    written += _remind(conn, inc, clock, light, at)
    return written


def member_notices(engine: Engine, member_id: str, limit: int = 20) -> list[dict]:
    """A member's notices, unread first, then newest first."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT notice_id, created_at, incident_id, kind, message, read_at FROM notices "
                                 "WHERE member_id = :m ORDER BY read_at IS NULL DESC, created_at DESC, "
                                 "notice_id DESC LIMIT :n"),
                            {"m": member_id, "n": int(limit)})
        return [dict(r._mapping) for r in rows]


def mark_member_notice_read(engine: Engine, notice_id: int, member_id: str, at: datetime) -> dict | None:
    """Mark one of ``member_id``'s own notices read at ``at`` (kept when read before); None, and nothing
    written, when the notice is missing or another's — alike."""
    with engine.begin() as conn:
        row = conn.execute(text(
            "UPDATE notices SET read_at = COALESCE(read_at, :at) WHERE notice_id = :id AND member_id = :m "
            "RETURNING notice_id, incident_id, read_at"), {"id": int(notice_id), "m": member_id, "at": at}).first()
    return dict(row._mapping) if row is not None else None


def region_notices(engine: Engine, codes: list[str] | None, limit: int = 50) -> list[dict]:
    """Notices for the dispatchers of the regions ``codes`` (grid, community or street codes; None: all),
    newest first."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT notice_id, created_at, incident_id, region_code, kind, message, read_at FROM notices "
            "WHERE region_code IS NOT NULL AND (CAST(:codes AS text[]) IS NULL OR region_code = ANY(:codes)) "
            "ORDER BY created_at DESC, notice_id DESC LIMIT :n"), {"codes": codes, "n": int(limit)})
        return [dict(r._mapping) for r in rows]


# -- the dispatchers' notices page (/notices) ---------------------------------------------------------------

_REGION_NOTICE = (
    "SELECT n.notice_id, n.created_at, n.incident_id, n.region_code, n.kind, n.message, n.read_at, "
    "COALESCE(rg.name, rc.name, rs.name) AS region_name, i.category, i.status, i.reported_at, i.respond_due_at, "
    "i.deadline_at, i.accepted_at, i.closed_at, i.assigned_member_id, i.escalation_level, i.grid_code, "
    "g.name AS grid_name, i.community_code, c.name AS community_name, i.street_code, s.name AS street_name "
    "FROM notices n LEFT JOIN incidents i ON i.incident_id = n.incident_id "
    "LEFT JOIN grids g ON g.grid_code = i.grid_code LEFT JOIN communities c ON c.code = i.community_code "
    "LEFT JOIN streets s ON s.code = i.street_code LEFT JOIN grids rg ON rg.grid_code = n.region_code "
    "LEFT JOIN communities rc ON rc.code = n.region_code LEFT JOIN streets rs ON rs.code = n.region_code "
    "WHERE n.region_code IS NOT NULL AND (CAST(:codes AS text[]) IS NULL OR n.region_code = ANY(:codes)) ")


def region_notice_page(engine: Engine, codes: Collection[str] | None, offset: int = 0,
                       limit: int = 20) -> tuple[list[dict], int, int]:
    """One page of the notices for the dispatchers of the regions ``codes`` (grid, community or street
    codes; None: all): unread first, then newest. Each row carries its incident's category, status,
    deadlines and grid/community/street codes with their names, and the addressed region's name.
    Returns (rows, notices in all, unread in all)."""
    params = {"codes": None if codes is None else sorted(codes), "n": int(limit), "o": int(offset)}
    with engine.connect() as conn:
        rows = conn.execute(text(_REGION_NOTICE + "ORDER BY n.read_at IS NULL DESC, n.created_at DESC, "
                                 "n.notice_id DESC LIMIT :n OFFSET :o"), params)
        out = [dict(r._mapping) for r in rows]
        total, unread = conn.execute(text(
            "SELECT count(*), count(*) FILTER (WHERE read_at IS NULL) FROM notices WHERE region_code IS NOT NULL "
            "AND (CAST(:codes AS text[]) IS NULL OR region_code = ANY(:codes))"), params).one()
    return out, int(total), int(unread)


def region_notice(engine: Engine, notice_id: int, codes: Collection[str] | None) -> dict | None:
    """One dispatchers' notice with its incident (as :func:`region_notice_page`), or None when it is
    missing, a member's own notice, or addressed to a region outside ``codes`` — alike."""
    params = {"codes": None if codes is None else sorted(codes), "id": int(notice_id)}
    with engine.connect() as conn:
        row = conn.execute(text(_REGION_NOTICE + "AND n.notice_id = :id"), params).first()
    return dict(row._mapping) if row is not None else None


def mark_region_notice_read(engine: Engine, notice_id: int, codes: Collection[str] | None, at: datetime,
                            audit: dict) -> dict | None:
    """Mark a dispatchers' notice read at ``at`` (kept when it was read before) and write one ``audit_log``
    row (action ``notice_read``, what ``notices``; ``audit`` gives ``role``, ``member_id``, ``token_id`` and
    ``detail``) in the same transaction. None, and nothing written, when the notice is missing or outside
    ``codes`` (see :func:`region_notice`)."""
    from geodata.store.auth import audit_log

    params = {"codes": None if codes is None else sorted(codes), "id": int(notice_id), "at": at}
    with engine.begin() as conn:
        row = conn.execute(text(
            "UPDATE notices SET read_at = COALESCE(read_at, :at) WHERE notice_id = :id AND region_code IS NOT NULL "
            "AND (CAST(:codes AS text[]) IS NULL OR region_code = ANY(:codes)) "
            "RETURNING notice_id, incident_id, region_code, read_at"), params).first()
        if row is None:
            return None
        conn.execute(audit_log.insert().values(
            token_id=audit.get("token_id"), role=audit.get("role"), member_id=audit.get("member_id"),
            action="notice_read", what="notices", ids=[str(row.notice_id)], n_ids=1,
            detail={**audit.get("detail", {}), "incident_id": row.incident_id, "region_code": row.region_code}))
    return dict(row._mapping)
