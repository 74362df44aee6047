"""Incident figures for the leaders' pages (``GET /incidents/stats``) and the region tree, straight from PostGIS.

The database sums a region's incidents per (street, community, grid, member, category) with the flags
the KPIs need — one hash table over the incidents; those partial sums (a few thousand rows for a city,
averages carried as sums and counts) are then added up per level here. The partial sums of closed
incidents do not change with the clock and are kept until the next write to ``incidents``
(:mod:`geodata.store.stats_cache`); only the open ones are summed on every call.

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

import pandas as pd
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
  WHERE {where}
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

#: Sums per (street, community, grid, member, category) — the partial sums the levels are added up from.
_PARTIAL = _FLAGS + """
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
       COALESCE(sum(response_hours), 0)::float8 AS response_hours_sum, count(response_hours) AS responses,
       count(*) FILTER (WHERE rating IS NOT NULL) AS rated,
       count(*) FILTER (WHERE rating >= 4) AS satisfied,
       COALESCE(sum(rating), 0)::bigint AS rating_sum
FROM f GROUP BY 1, 2, 3, 4, 5
"""

#: Incidents whose figures no longer depend on the clock ``at`` (closed at a known time): their sums are cached.
_SETTLED = "status = ANY(:closed_states) AND closed_at IS NOT NULL"

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
_OPEN_PAST_DEADLINE = "NOT (status = ANY(:closed_states)) AND deadline_at < CAST(:at AS timestamptz)"

#: The levels a region's incidents are summed by, and the partial sums' column each level is keyed by.
_LEVEL_KEYS = {"street": "street_code", "community": "community_code", "grid": "grid_code",
               "member": "assigned_member_id", "category": "category"}
_COUNTS = ("incidents", "red", "yellow", "green", "overdue_open", "closed", "accept_due", "accepted_on_time",
           "close_due", "closed_on_time", "rated", "satisfied")
_SUMS = (*_COUNTS, "response_hours_sum", "responses", "rating_sum")


#: The response deadline (受理): the one set at report time, else 24 h after the report.
_ACCEPT_DUE = f"COALESCE(respond_due_at, reported_at + interval '{int(ORDINARY_RESPONSE_HOURS)} hours')"


def _params(region: str | None, t0: datetime | None, t1: datetime | None,
            category: str | None, at: datetime) -> dict:
    return {"region": region, "t0": t0, "t1": t1, "category": category, "at": at,
            "closed_states": [rules.CLOSED, rules.RATED], "yellow": YELLOW_FRACTION}


def _where(params: dict, *extra: str) -> str:
    """The incidents' filter, with only the conditions asked for: a condition ``:x IS NULL OR …`` left in
    would be evaluated for every row of every partition (and keeps a generic plan from pruning)."""
    parts = ["(grid_code = :region OR community_code = :region OR street_code = :region)"
             if params["region"] is not None else "",
             "reported_at >= :t0" if params["t0"] is not None else "",
             "reported_at < :t1" if params["t1"] is not None else "",
             "category = :category" if params["category"] is not None else "", *extra]
    return " AND ".join(p for p in parts if p) or "TRUE"


def incident_counts(engine: Engine, region: str | None, *, at: datetime, t0: datetime | None = None,
                    t1: datetime | None = None, category: str | None = None) -> dict[str, list[dict]]:
    """Counts of the incidents reported in ``[t0, t1)`` in ``region`` (street/community/grid code;
    None = all), optionally of one ``category``, summed per level.

    The sums of closed incidents are kept between calls (:mod:`geodata.store.stats_cache`, never older
    than the last committed write to ``incidents``); the open ones are summed on each call.

    Returns
    -------
    dict
        ``total`` (one row), ``street``, ``community``, ``grid``, ``member`` and ``category`` rows,
        each with the level's code in ``code`` and the counts ``incidents``, ``red``/``yellow``/
        ``green`` (light at ``at``), ``overdue_open``, ``closed``, ``accept_due``,
        ``accepted_on_time``, ``close_due``, ``closed_on_time``, ``avg_response_hours`` (hours),
        ``rated``, ``satisfied`` (rated 4–5) and ``avg_rating``.
    """
    from geodata.store import stats_cache

    params = _params(region, t0, t1, category, at)
    settled = stats_cache.cached(engine, ("incident_counts", region, t0, t1, category),
                                 lambda: _partial_sums(engine, params, _SETTLED))
    live = _partial_sums(engine, params, f"NOT ({_SETTLED})")
    return _levels(pd.concat([settled, live], ignore_index=True) if len(live) else settled)


def _partial_sums(engine: Engine, params: dict, only: str) -> pd.DataFrame:
    """The sums per (street, community, grid, member, category) of the incidents that pass ``only``."""
    with engine.connect() as conn:
        _serial(conn)
        rows = conn.execute(text(_PARTIAL.format(accept_due=_ACCEPT_DUE, where=_where(params, only))), params)
        frame = pd.DataFrame(rows.all(), columns=list(rows.keys()))
    return frame.astype({c: "int64" for c in _SUMS if c != "response_hours_sum"} | {"response_hours_sum": "float64"})


def _serial(conn: Connection) -> None:
    """No parallel workers in this transaction: on a busy machine starting them costs more than the few
    thousand rows a request reads."""
    conn.execute(text("SELECT set_config('max_parallel_workers_per_gather', '0', true)"))


def _levels(partial: pd.DataFrame) -> dict[str, list[dict]]:
    """The partial sums added up per level (what ``GROUPING SETS`` gave), each level's rows sorted by code."""
    out: dict[str, list[dict]] = {"total": _rows([None], partial[list(_SUMS)].sum().to_frame().T) if len(partial)
                                  else [_empty_total()]}
    for level, key in _LEVEL_KEYS.items():
        sums = partial.groupby(key, dropna=False, sort=False)[list(_SUMS)].sum()
        rows = _rows([None if pd.isna(code) else code for code in sums.index.tolist()], sums)
        out[level] = sorted(rows, key=lambda r: (r["code"] is None, r["code"] or ""))
    return out


def _rows(codes: list, sums: pd.DataFrame) -> list[dict]:
    """One row per code: the counts as ints, the averages from their sums (None where nothing was counted)."""
    counts = sums[list(_COUNTS)].to_numpy(dtype="int64").tolist()  # plain ints, made in one pass
    hours, responses = sums["response_hours_sum"].tolist(), sums["responses"].tolist()
    ratings, rated = sums["rating_sum"].tolist(), sums["rated"].tolist()
    return [{"code": code, **dict(zip(_COUNTS, c, strict=True)),
             "avg_response_hours": h / n if n else None, "avg_rating": r / k if k else None}
            for code, c, h, n, r, k in zip(codes, counts, hours, responses, ratings, rated, strict=True)]


def _empty_total() -> dict:
    return {"code": None, **{k: 0 for k in _COUNTS}, "avg_response_hours": None, "avg_rating": None}


def overdue_incidents(engine: Engine, region: str | None, *, at: datetime, t0: datetime | None = None,
                      t1: datetime | None = None, category: str | None = None, limit: int = 500) -> list[dict]:
    """Open incidents past their completion deadline at ``at`` (red), most overdue first, with who
    holds each (``assigned_member_id``), ``overdue_hours`` (since the deadline) and ``held_hours``
    (since it was assigned, or reported when nobody holds it)."""
    with engine.connect() as conn:
        params = _params(region, t0, t1, category, at)
        _serial(conn)
        rows = conn.execute(text(_OVERDUE.format(accept_due=_ACCEPT_DUE, where=_where(params, _OPEN_PAST_DEADLINE))),
                            {**params, "limit": int(limit)})
        return [dict(r._mapping) for r in rows]


def member_names(engine: Engine, member_ids: list[str]) -> dict[str, dict]:
    """``member_id`` → ``{name, grid_code}`` of the given members (personal data: mask before showing).

    Kept between calls for the same ids (a whole city's 2,550 holders cost a scan of every street's
    partition): never older than the last committed change of a member's id, name or grid."""
    from geodata.store import stats_cache

    return dict(stats_cache.cached(engine, ("member_names", tuple(member_ids)),
                                   lambda: _member_names(engine, member_ids)))


def _member_names(engine: Engine, member_ids: list[str]) -> dict[str, dict]:
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
