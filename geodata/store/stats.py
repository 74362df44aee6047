"""Incident figures for the leaders' pages (``GET /incidents/stats``) and the region tree, straight from PostGIS.

One query counts a region's incidents per street, community, grid and member (``GROUPING SETS``) with
the flags the KPIs need, so a whole city's incidents are summed by the database, not in Python. It sums
in two steps: once per (street, community, grid, member, category) — one hash table over the incidents —
then the grouping sets over those partial sums (averages carried as sums and counts), which costs a
third less than six hash tables over every incident.

Clocks (all times ``timestamptz``; shown in China time by the pages):

* the **response** clock (受理): ``respond_due_at`` (the response deadline set at report time from the
  deadline rules), else ``reported_at`` + 24 h (一般事项24小时内响应) for rows imported without one. An incident counts
  as accepted at ``accepted_at``; one closed without an acceptance time was accepted at the latest
  when it was closed (``closed_at``).
* the **completion** clock (办结): ``deadline_at`` (ordinary 24 h, complex 3 working days — set at
  report time with the holiday calendar, so weekends and holidays are already inside it).

An incident is *due* on a clock once it has met it or the clock has run out at ``at``; the rates
are taken over the due incidents only, so an incident still inside its window counts for nothing.
The 红黄绿灯 light is :func:`gridmap.dispatch.light` written in SQL (closed incidents at their
closing time, open ones at ``at``; yellow in the last 20 % of the window).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from gridmap import dispatch as rules
from gridmap.contract import ORDINARY_RESPONSE_HOURS, YELLOW_FRACTION

#: Levels the figures are grouped by, and the incidents column of each.
LEVEL_COLUMNS = {"street": "street_code", "community": "community_code", "grid": "grid_code",
                 "member": "assigned_member_id"}

_FLAGS = """
WITH i AS (
  SELECT incident_id, category, status, street_code, community_code, grid_code, assigned_member_id,
         reported_at, deadline_at, closed_at, assigned_at, rating,
         COALESCE(accepted_at, closed_at) AS accepted_time,
         {accept_due} AS accept_due,
         CASE WHEN closed_at IS NOT NULL THEN closed_at ELSE CAST(:at AS timestamptz) END AS light_time,
         status = ANY(:closed_states) AS is_closed
  FROM incidents
  WHERE (CAST(:region AS text) IS NULL OR grid_code = :region OR community_code = :region OR street_code = :region)
    AND (CAST(:t0 AS timestamptz) IS NULL OR reported_at >= :t0)
    AND (CAST(:t1 AS timestamptz) IS NULL OR reported_at < :t1)
    AND (CAST(:category AS text) IS NULL OR category = :category){only}
), f AS (
  SELECT *,
    CASE WHEN deadline_at IS NULL OR (is_closed AND closed_at IS NULL) THEN NULL
         WHEN light_time > deadline_at THEN 'red'
         WHEN light_time >= deadline_at - (deadline_at - reported_at) * :yellow THEN 'yellow'
         ELSE 'green' END AS light,
    (accepted_time IS NOT NULL OR accept_due <= :at) AS accept_due_now,
    (accepted_time IS NOT NULL AND accepted_time <= accept_due) AS accepted_on_time,
    (deadline_at IS NOT NULL AND (closed_at IS NOT NULL OR deadline_at <= :at)) AS close_due_now,
    (closed_at IS NOT NULL AND deadline_at IS NOT NULL AND closed_at <= deadline_at) AS closed_on_time,
    EXTRACT(EPOCH FROM (accepted_time - reported_at)) / 3600.0 AS response_hours
  FROM i
)
"""

_GROUPED = _FLAGS + """
, partial AS (
  SELECT street_code, community_code, grid_code, assigned_member_id, category,
         count(*) AS incidents,
         count(*) FILTER (WHERE light = 'red') AS red,
         count(*) FILTER (WHERE light = 'yellow') AS yellow,
         count(*) FILTER (WHERE light = 'green') AS green,
         count(*) FILTER (WHERE NOT is_closed AND light = 'red') AS overdue_open,
         count(*) FILTER (WHERE is_closed) AS closed,
         count(*) FILTER (WHERE accept_due_now) AS accept_due,
         count(*) FILTER (WHERE accepted_on_time) AS accepted_on_time,
         count(*) FILTER (WHERE close_due_now) AS close_due,
         count(*) FILTER (WHERE closed_on_time) AS closed_on_time,
         sum(response_hours) AS response_hours_sum, count(response_hours) AS responses,
         count(*) FILTER (WHERE rating IS NOT NULL) AS rated,
         count(*) FILTER (WHERE rating >= 4) AS satisfied,
         sum(rating) AS rating_sum
  FROM f GROUP BY 1, 2, 3, 4, 5
)
SELECT street_code, community_code, grid_code, assigned_member_id, category,
       GROUPING(street_code, community_code, grid_code, assigned_member_id, category) AS grouping_id,
       sum(incidents)::bigint AS incidents, sum(red)::bigint AS red, sum(yellow)::bigint AS yellow,
       sum(green)::bigint AS green, sum(overdue_open)::bigint AS overdue_open, sum(closed)::bigint AS closed,
       sum(accept_due)::bigint AS accept_due, sum(accepted_on_time)::bigint AS accepted_on_time,
       sum(close_due)::bigint AS close_due, sum(closed_on_time)::bigint AS closed_on_time,
       sum(response_hours_sum) / NULLIF(sum(responses), 0) AS avg_response_hours,
       sum(rated)::bigint AS rated, sum(satisfied)::bigint AS satisfied,
       sum(rating_sum)::numeric / NULLIF(sum(rated), 0) AS avg_rating
FROM partial
GROUP BY GROUPING SETS ((), (street_code), (community_code), (grid_code), (assigned_member_id), (category))
"""

_OVERDUE = _FLAGS + """
SELECT incident_id, category, status, street_code, community_code, grid_code, assigned_member_id,
       reported_at, deadline_at, accepted_time AS accepted_at,
       EXTRACT(EPOCH FROM (CAST(:at AS timestamptz) - deadline_at)) / 3600.0 AS overdue_hours,
       EXTRACT(EPOCH FROM (CAST(:at AS timestamptz) - COALESCE(assigned_at, reported_at))) / 3600.0 AS held_hours
FROM f
WHERE NOT is_closed AND light = 'red'
ORDER BY deadline_at, incident_id
LIMIT :limit
"""

#: The overdue list's rows filtered before the flags are computed (the same rows its ``light = 'red'`` keeps).
_ONLY_OPEN_PAST_DEADLINE = """
    AND NOT (status = ANY(:closed_states)) AND deadline_at < CAST(:at AS timestamptz)"""

#: GROUPING() bit masks (5 grouped columns, leftmost = highest bit) → the level a row sums.
_GROUPING_LEVEL = {0b11111: "total", 0b01111: "street", 0b10111: "community", 0b11011: "grid",
                   0b11101: "member", 0b11110: "category"}


def _params(conn: Connection, region: str | None, t0: datetime | None, t1: datetime | None,
            category: str | None, at: datetime) -> tuple[dict, str]:
    window = f"reported_at + interval '{int(ORDINARY_RESPONSE_HOURS)} hours'"
    accept_due = f"COALESCE(respond_due_at, {window})"
    params = {"region": region, "t0": t0, "t1": t1, "category": category, "at": at,
              "closed_states": [rules.CLOSED, rules.RATED], "yellow": YELLOW_FRACTION}
    return params, accept_due


def incident_counts(engine: Engine, region: str | None, *, at: datetime, t0: datetime | None = None,
                    t1: datetime | None = None, category: str | None = None) -> dict[str, list[dict]]:
    """Counts of the incidents reported in ``[t0, t1)`` in ``region`` (street/community/grid code;
    None = all), optionally of one ``category``, summed per level.

    Returns
    -------
    dict
        ``total`` (one row), ``street``, ``community``, ``grid``, ``member`` and ``category`` rows,
        each with the level's code in ``code`` and the counts ``incidents``, ``red``/``yellow``/
        ``green`` (light at ``at``), ``overdue_open``, ``closed``, ``accept_due``,
        ``accepted_on_time``, ``close_due``, ``closed_on_time``, ``avg_response_hours`` (hours),
        ``rated``, ``satisfied`` (rated 4–5) and ``avg_rating``.
    """
    out: dict[str, list[dict]] = {level: [] for level in _GROUPING_LEVEL.values()}
    with engine.connect() as conn:
        params, accept_due = _params(conn, region, t0, t1, category, at)
        rows = conn.execute(text(_GROUPED.format(accept_due=accept_due, only="")), params)
        for r in rows:
            row = dict(r._mapping)
            level = _GROUPING_LEVEL[row.pop("grouping_id")]
            key = {"street": "street_code", "community": "community_code", "grid": "grid_code",
                   "member": "assigned_member_id", "category": "category"}.get(level)
            code = row[key] if key else None
            for c in ("street_code", "community_code", "grid_code", "assigned_member_id", "category"):
                row.pop(c)
            out[level].append({"code": code, **row})
    if not out["total"]:
        out["total"] = [_empty_total()]
    return out


def _empty_total() -> dict:
    zero = ("incidents", "red", "yellow", "green", "overdue_open", "closed", "accept_due", "accepted_on_time",
            "close_due", "closed_on_time", "rated", "satisfied")
    return {"code": None, **{k: 0 for k in zero}, "avg_response_hours": None, "avg_rating": None}


def overdue_incidents(engine: Engine, region: str | None, *, at: datetime, t0: datetime | None = None,
                      t1: datetime | None = None, category: str | None = None, limit: int = 500) -> list[dict]:
    """Open incidents past their completion deadline at ``at`` (red), most overdue first, with who
    holds each (``assigned_member_id``), ``overdue_hours`` (since the deadline) and ``held_hours``
    (since it was assigned, or reported when nobody holds it)."""
    with engine.connect() as conn:
        params, accept_due = _params(conn, region, t0, t1, category, at)
        rows = conn.execute(text(_OVERDUE.format(accept_due=accept_due, only=_ONLY_OPEN_PAST_DEADLINE)),
                            {**params, "limit": int(limit)})
        return [dict(r._mapping) for r in rows]


def member_names(engine: Engine, member_ids: list[str]) -> dict[str, dict]:
    """``member_id`` → ``{name, grid_code}`` of the given members (personal data: mask before showing)."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT m.member_id, m.name, m.grid_code FROM unnest(CAST(:m AS text[])) AS u(id) "
                                 "JOIN members m ON m.member_id = u.id"), {"m": list(member_ids)})
        return {r.member_id: {"name": r.name, "grid_code": r.grid_code} for r in rows}


def region_path(engine: Engine, code: str) -> list[dict]:
    """The chain street → community → grid down to ``code`` (a street, community or grid code), each
    ``{level, code, name}``; empty when the code is unknown."""
    sql = text("""
        SELECT 'grid' AS level, g.grid_code AS code, g.name, g.community_code AS parent FROM grids g WHERE g.grid_code = :c
        UNION ALL SELECT 'community', c.code, c.name, c.street_code FROM communities c WHERE c.code = :c
        UNION ALL SELECT 'street', s.code, s.name, NULL FROM streets s WHERE s.code = :c""")
    path: list[dict] = []
    with engine.connect() as conn:
        while code and len(path) < 3:
            row = conn.execute(sql, {"c": code}).first()
            if row is None:
                break
            path.insert(0, {"level": row.level, "code": row.code, "name": row.name})
            code = row.parent
    return path


def region_children(engine: Engine, code: str) -> list[dict]:
    """The communities of a street or the grids of a community, ``{level, code, name}`` sorted by code."""
    sql = text("""
        SELECT 'community' AS level, code, name FROM communities WHERE street_code = :c
        UNION ALL SELECT 'grid', grid_code, name FROM grids WHERE community_code = :c
        ORDER BY 2""")
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sql, {"c": code})]


def grid_worker_count(engine: Engine, grid_codes: list[str], kinds: tuple[str, ...]) -> int:
    """Members of the given ``kinds`` (e.g. full-time grid workers, 专职网格员) in the grids ``grid_codes``."""
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM members WHERE grid_code = ANY(:g) AND kind = ANY(:k)"),
                                {"g": list(grid_codes), "k": list(kinds)}).scalar() or 0)


def member_links(engine: Engine, grid_codes: list[str]) -> list[dict]:
    """Members of the grids ``grid_codes`` with the number of households linked to each in the current
    包片联户 run (``linked_households``); ``name`` is personal data (mask before showing)."""
    sql = text("""
        WITH m AS MATERIALIZED (SELECT member_id, name, grid_code, kind FROM members WHERE grid_code = ANY(:g))
        SELECT m.member_id, m.name, m.grid_code, m.kind, COALESCE(l.n, 0) AS linked_households
        FROM m
        LEFT JOIN (SELECT l.member_id, count(*) AS n FROM links l
                   JOIN link_runs r ON r.run_id = l.run_id AND r.is_current
                   WHERE l.member_id IN (SELECT member_id FROM m)  -- only these members' links, not the city's
                   GROUP BY l.member_id) l USING (member_id)
        ORDER BY m.member_id""")
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sql, {"g": list(grid_codes)})]


def first_street(engine: Engine) -> str | None:
    """The region a user whose regions are everywhere opens on: the first street, else (data loaded without
    streets, as the bundled sample) the first community, else the first grid."""
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT coalesce((SELECT code FROM streets ORDER BY code LIMIT 1), "
            "(SELECT code FROM communities ORDER BY code LIMIT 1), "
            "(SELECT grid_code FROM grids ORDER BY grid_code LIMIT 1))")).scalar()
