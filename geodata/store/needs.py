"""Needs (需求清单) and the members' skill supply (资源清单) in PostGIS.

A need is an open incident of the help category (求助服务 / 需求点单, usually a resident's report).
It is *met* by an available member (党员 / 网格员) whose skills hold the need's ``required_skill``
(any member when the need names no skill) within the service radius. Distances are metres on the
sphere (``ST_DWithin``/``ST_Distance`` on ``geography`` with ``use_spheroid = false``, the same
sphere as :mod:`geodata.store.nearest`, whose GiST index on ``geom::geography`` bounds the scan);
coordinates WGS84 degrees. Nothing here returns a member's name except :func:`community_members`
and :func:`members_named`, whose callers mask it (``api.auth.present_pii``).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine

from geodata.store.incidents import NotFound
from gridmap import dispatch as rules
from gridmap.contract import SERVICE_RADIUS_M

#: Most matching members listed per need (nearest first).
MATCHES_PER_NEED = 5

_NEED_COLS = ("i.incident_id, i.category, i.required_skill, i.status, i.reported_at, i.deadline_at, i.grid_code, "
              "i.community_code, i.street_code, i.assigned_member_id, i.description, i.address, "
              "(SELECT g.name FROM grids g WHERE g.grid_code = i.grid_code) AS grid_name, "
              "ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat")

# A member can meet a need when available, skilled (or the need names no skill) and within :radius metres.
_CAN_MEET = ("m.available AND (i.required_skill IS NULL OR i.required_skill = ANY(m.skills)) "
             "AND ST_DWithin(m.geom::geography, i.geom::geography, :radius, false)")

_MATCHED_NEEDS_SQL = text(f"""
SELECT {_NEED_COLS}, coalesce(mt.matches, '[]'::json) AS matches
FROM incidents i
LEFT JOIN LATERAL (
  SELECT json_agg(json_build_object('member_id', x.member_id, 'grid_code', x.grid_code, 'kind', x.kind,
                                    'distance_m', x.distance_m) ORDER BY x.distance_m, x.member_id) AS matches
  FROM (SELECT m.member_id, m.grid_code, m.kind,
               ST_Distance(m.geom::geography, i.geom::geography, false) AS distance_m
        FROM members m WHERE {_CAN_MEET}
        ORDER BY m.geom::geography <-> i.geom::geography, m.member_id COLLATE "C" LIMIT :k) x
) mt ON true
WHERE i.category = :category AND i.status = ANY(:open) AND i.community_code = :community
ORDER BY i.reported_at, i.incident_id
""")


def community_needs(engine: Engine, community_code: str, *, category: str, radius_m: float = SERVICE_RADIUS_M,
                    k: int = MATCHES_PER_NEED) -> list[dict]:
    """A community's open needs, oldest first, each with the members who can meet it.

    Parameters
    ----------
    community_code : the community (社区) the needs were routed to.
    category : the incident category that makes a need (求助服务).
    radius_m : service radius in metres (great circle); default the 15-minute circle, 1,000 m.
    k : most matching members listed per need.

    Returns
    -------
    list of dict: the need's columns (``incident_id, category, required_skill, status, reported_at,
    deadline_at, grid_code, grid_name, community_code, description, address, lon, lat``) and ``matches``, a list
    of ``{member_id, grid_code, kind, distance_m}`` nearest first (empty: a gap, 缺口).
    """
    params = {"category": category, "open": list(rules.OPEN_STATES), "community": community_code,
              "radius": float(radius_m), "k": int(k)}
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(_MATCHED_NEEDS_SQL, params)]


def community_members(engine: Engine, community_code: str) -> list[dict]:
    """The members of a community's grids (资源清单) with their skills, availability and — personal
    data the caller must mask — ``name``; by grid, then member id."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT m.member_id, m.grid_code, g.name AS grid_name, m.kind, m.skills, m.available, m.name "
            "FROM members m JOIN grids g ON g.grid_code = m.grid_code WHERE g.community_code = :c "
            "ORDER BY m.grid_code, m.member_id COLLATE \"C\""), {"c": community_code})
        return [dict(r._mapping) for r in rows]


def members_named(engine: Engine, member_ids: list[str]) -> list[dict]:
    """``member_id``, ``grid_code``, ``grid_name`` and ``name`` (personal data: the caller masks it) of
    the given members, by id."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT m.member_id, m.grid_code, g.name AS grid_name, m.name FROM members m "
            "LEFT JOIN grids g ON g.grid_code = m.grid_code WHERE m.member_id = ANY(:ids) "
            "ORDER BY m.member_id COLLATE \"C\""), {"ids": list(member_ids)})
        return [dict(r._mapping) for r in rows]


def skill_supply(members: list[dict]) -> dict[str, int]:
    """How many available members offer each skill tag, most offered first (ties by tag)."""
    counts: dict[str, int] = {}
    for m in members:
        if m.get("available"):
            for skill in m.get("skills") or ():
                counts[skill] = counts.get(skill, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


_NEAR_MEMBER_SQL = text(f"""
SELECT {_NEED_COLS}, ST_Distance(m.geom::geography, i.geom::geography, false) AS distance_m
FROM members m JOIN incidents i ON i.category = :category
 AND (i.status = 'reported' OR (i.status = ANY(:open) AND i.assigned_member_id = m.member_id))
 AND (i.required_skill IS NULL OR i.required_skill = ANY(m.skills))
 AND ST_DWithin(m.geom::geography, i.geom::geography, :radius, false)
WHERE m.member_id = :member
ORDER BY distance_m, i.incident_id COLLATE "C" LIMIT :limit
""")


def needs_near_member(engine: Engine, member_id: str, *, category: str, radius_m: float = SERVICE_RADIUS_M,
                      limit: int = 50) -> list[dict]:
    """Open needs a member can meet: within ``radius_m`` metres (sphere) of the member's point, of a
    skill the member has (or naming none), not yet assigned or assigned to this member; nearest first,
    each with ``distance_m``. Raises :class:`NotFound` for an unknown member."""
    params = {"member": member_id, "category": category, "open": list(rules.OPEN_STATES),
              "radius": float(radius_m), "limit": int(limit)}
    with engine.connect() as conn:
        if conn.execute(text("SELECT 1 FROM members WHERE member_id = :m"), {"m": member_id}).first() is None:
            raise NotFound(f"no member {member_id}")
        return [dict(r._mapping) for r in conn.execute(_NEAR_MEMBER_SQL, params)]


def communities_in(engine: Engine, codes: frozenset[str] | None) -> list[dict]:
    """Communities (社区) with ``code``, ``name`` and ``street_code``, limited to ``codes`` (None: all); by code."""
    sql = "SELECT code, name, street_code FROM communities"
    params: dict = {}
    if codes is not None:
        sql += " WHERE code = ANY(:codes)"
        params["codes"] = sorted(codes)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql + " ORDER BY code COLLATE \"C\""), params)]
