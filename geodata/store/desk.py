"""Reads of the dispatchers' desk (调度台) in PostGIS: a region's open incidents, the responders a
desk proposes, how many open incidents each holds.

Nothing here writes: 派单 goes through ``api.usecases.dispatch.act``. Region filters are code sets
(grid, community, street) already expanded from the caller's regions; None means every region.
Coordinates WGS84 degrees; no distances are computed here (``geodata.store.routing.propose`` does,
in metres).
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from gridmap import dispatch as rules

#: Where an incident came from, as the desk groups it: residents' /report and Open311 tickets
#: (``source = 'public'``), rows of ``gridmap import incidents`` (an ``import`` event), staff otherwise.
SOURCE_SQL = ("CASE WHEN i.source = 'public' THEN 'public' "
              "WHEN EXISTS (SELECT 1 FROM incident_events e WHERE e.incident_id = i.incident_id "
              "AND e.action = 'import') THEN 'import' ELSE 'staff' END")

_OPEN_SQL = (
    "SELECT i.incident_id, i.category, i.level, i.status, i.required_skill, i.reported_at, i.deadline_at, "
    "i.respond_due_at, i.accepted_at, i.closed_at, i.assigned_at, i.grid_code, i.community_code, i.street_code, "
    "i.assigned_member_id, i.escalation_level, i.description, i.ticket, g.name AS grid_name, "
    f"ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat, {SOURCE_SQL} AS source_kind "
    "FROM incidents i LEFT JOIN grids g ON g.grid_code = i.grid_code "
    "WHERE i.status = ANY(:open) {region} ORDER BY i.reported_at, i.incident_id COLLATE \"C\"")

_REGION_SQL = ("AND (i.grid_code = ANY(:grids) OR i.community_code = ANY(:comms) "
               "OR i.street_code = ANY(:streets))")


def region_params(scope) -> tuple[str, dict]:
    """The SQL condition and parameters of a region scope (``grids``, ``communities``, ``streets``
    code sets), or an empty condition for None (every region)."""
    if scope is None:
        return "", {}
    return _REGION_SQL, {"grids": sorted(scope.grids), "comms": sorted(scope.communities),
                         "streets": sorted(scope.streets)}


def open_incidents(engine: Engine, scope=None) -> list[dict]:
    """Every open incident (待派单, 已派单, 处理中) of the scope, oldest first, with its grid's name,
    ``source_kind`` (``public``, ``import``, ``staff``) and WGS84 ``lon``/``lat``."""
    cond, params = region_params(scope)
    with engine.connect() as conn:
        rows = conn.execute(text(_OPEN_SQL.format(region=cond)), {"open": list(rules.OPEN_STATES), **params})
        return [dict(r._mapping) for r in rows]


def incident_extras(engine: Engine, incident_id: str) -> dict:
    """What the desk shows of one incident beside :func:`geodata.store.incidents.get_incident`: its
    grid's, community's and street's names, ``source_kind`` and the resident's description."""
    sql = text(
        f"SELECT g.name AS grid_name, c.name AS community_name, s.name AS street_name, {SOURCE_SQL} AS source_kind, "
        "i.description, i.address, i.ticket FROM incidents i LEFT JOIN grids g ON g.grid_code = i.grid_code "
        "LEFT JOIN communities c ON c.code = i.community_code LEFT JOIN streets s ON s.code = i.street_code "
        "WHERE i.incident_id = :i")
    with engine.connect() as conn:
        row = conn.execute(sql, {"i": incident_id}).first()
    return dict(row._mapping) if row is not None else {}


def members(conn: Connection, member_ids: Collection[str]) -> dict[str, dict]:
    """Members by id with ``name``, ``phone`` (personal data: the caller masks), ``kind``, ``skills``,
    ``available``, ``grid_code`` with the grid's name, and ``open_count`` — the open incidents each
    holds now."""
    if not member_ids:
        return {}
    rows = conn.execute(text(
        "SELECT m.member_id, m.name, m.phone, m.kind, m.skills, m.available, m.grid_code, g.name AS grid_name, "
        "(SELECT count(*) FROM incidents i WHERE i.assigned_member_id = m.member_id AND i.status = ANY(:open)) "
        "AS open_count FROM members m LEFT JOIN grids g ON g.grid_code = m.grid_code "
        "WHERE m.member_id = ANY(:ids)"), {"ids": sorted(member_ids), "open": list(rules.OPEN_STATES)})
    return {r.member_id: dict(r._mapping) for r in rows}


def member_cards(engine: Engine, member_ids: Collection[str]) -> dict[str, dict]:
    """:func:`members` on a connection of its own."""
    with engine.connect() as conn:
        return members(conn, member_ids)
