"""The visit log (走访记录) in PostGIS: check-ins of members at their linked households.

A visit is stored with the phone's position (WGS84 point, may be missing for a phone call), the
accuracy the phone reported (metres) and the great-circle distance to the household (metres, on the
sphere: ``geography``). A visit farther than :data:`FAR_M` from the household is stored and flagged,
never refused: a member may well call from home. Notes may name residents, so readers outside the
personal-data rules get counts and dates only (the application layer decides).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Engine

from geodata.jsonenc import dumps

#: A visit whose position lies farther than this from the household is flagged (metres).
FAR_M = 200.0
#: Visit kinds: 上门 (at the door) and 电话 (by phone), with their labels.
VISIT_KINDS = {"door": "上门", "phone": "电话"}
NOTE_MAX_CHARS = 2000


class NotLinked(LookupError):
    """The household is missing or not linked to the member in a current run (the same answer)."""


@dataclass(frozen=True)
class NewVisit:
    """A check-in to store: WGS84 ``lon``/``lat`` (degrees, None for a call made without a position),
    ``accuracy_m`` as the phone gave it (metres), photo ``photo_path``/``photo_sha256`` if any."""

    member_id: str
    household_id: str
    visited_at: datetime
    kind: str
    note: str | None = None
    lon: float | None = None
    lat: float | None = None
    accuracy_m: float | None = None
    photo_path: str | None = None
    photo_sha256: str | None = None


_LINKED = ("SELECT 1 FROM links l JOIN link_runs r ON r.run_id = l.run_id AND r.is_current "
           "WHERE l.member_id = :m AND l.household_id = :h")


def record_visit(engine: Engine, visit: NewVisit, audit: dict | None = None) -> dict:
    """Store one visit of a member at one of their current linked households; returns the row.

    ``audit`` (the audit-log columns ``token_id``, ``role`` …) is written in the same transaction, so
    a visit is never stored unaudited. Raises :class:`NotLinked` (nothing written) when the household
    is not the member's, ValueError for an unknown kind or a note over :data:`NOTE_MAX_CHARS`.
    """
    if visit.kind not in VISIT_KINDS:
        raise ValueError(f"visit kind must be one of {', '.join(VISIT_KINDS)}, got {visit.kind!r}")
    if visit.note and len(visit.note) > NOTE_MAX_CHARS:
        raise ValueError(f"note is longer than {NOTE_MAX_CHARS} characters")
    has_point = visit.lon is not None and visit.lat is not None
    point = "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)" if has_point else "NULL"
    with engine.begin() as conn:
        if conn.execute(text(_LINKED), {"m": visit.member_id, "h": visit.household_id}).first() is None:
            raise NotLinked(visit.household_id)
        row = conn.execute(text(
            "INSERT INTO visits (member_id, household_id, visited_at, kind, note, accuracy_m, distance_m, far, "
            f"photo_path, photo_sha256, geom) SELECT :m, :h, :at, :kind, :note, :acc, d, COALESCE(d > :far, false), "
            f":pp, :ps, {point} FROM (SELECT ST_Distance(h.geom::geography, ({point})::geography, false) AS d "
            "FROM households h WHERE h.household_id = :h) x RETURNING visit_id, distance_m, far"),
            {"m": visit.member_id, "h": visit.household_id, "at": visit.visited_at, "kind": visit.kind,
             "note": visit.note or None, "acc": visit.accuracy_m, "far": FAR_M, "pp": visit.photo_path,
             "ps": visit.photo_sha256, "lon": visit.lon, "lat": visit.lat}).one()
        if audit is not None:
            _audit(conn, audit, "visit_write", [visit.household_id], {"visit_id": row.visit_id})
    return {"visit_id": row.visit_id, "household_id": visit.household_id, "distance_m": row.distance_m,
            "far": row.far, "visited_at": visit.visited_at, "kind": visit.kind}


def _audit(conn, audit: dict, action: str, ids: list[str], detail: dict) -> None:
    conn.execute(text("INSERT INTO audit_log (token_id, role, member_id, action, what, ids, n_ids, detail) "
                      "VALUES (:t, :r, :m, :a, 'households', :ids, :n, CAST(:d AS jsonb))"),
                 {"t": audit.get("token_id"), "r": audit.get("role"), "m": audit.get("member_id"), "a": action,
                  "ids": ids, "n": len(ids), "d": dumps(detail)})


def last_visits(engine: Engine, household_ids: Collection[str]) -> dict[str, datetime]:
    """The time of the latest visit of each household that has one (any member)."""
    if not household_ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT household_id, max(visited_at) FROM visits WHERE household_id = ANY(:h) "
                                 "GROUP BY household_id"), {"h": [str(h) for h in household_ids]})
        return {r[0]: r[1] for r in rows}


def member_visits(engine: Engine, member_id: str, limit: int = 50) -> list[dict]:
    """A member's latest visits, newest first, with the household's grid (for the PII rules) and
    the note. The caller decides whether the note may be shown."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT v.visit_id, v.household_id, h.grid_code, v.visited_at, v.kind, v.note, v.accuracy_m, "
            "v.distance_m, v.far, v.photo_path IS NOT NULL AS has_photo FROM visits v "
            "JOIN households h ON h.household_id = v.household_id WHERE v.member_id = :m "
            "ORDER BY v.visited_at DESC, v.visit_id DESC LIMIT :n"), {"m": member_id, "n": int(limit)})
        return [dict(r._mapping) for r in rows]


def visit_counts(engine: Engine, grid_codes: Collection[str] | None, since: datetime) -> list[dict]:
    """Per member of these grids (None: all): visits since ``since``, households visited, flagged
    far visits and the latest visit time — counts and dates only, no notes."""
    where = "" if grid_codes is None else "WHERE m.grid_code = ANY(:g)"
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT m.member_id, m.grid_code, count(v.visit_id) AS visits, "
            "count(DISTINCT v.household_id) AS households, count(v.visit_id) FILTER (WHERE v.far) AS far, "
            "max(v.visited_at) AS last_visit FROM members m "
            f"LEFT JOIN visits v ON v.member_id = m.member_id AND v.visited_at >= :since {where} "
            "GROUP BY m.member_id, m.grid_code ORDER BY m.member_id COLLATE \"C\""),
            {"since": since, "g": sorted(grid_codes) if grid_codes is not None else None})
        return [dict(r._mapping) for r in rows]
