"""Routing a WGS84 point to its grid, community and street, and proposing responders (吹哨报到).

A point goes to the grid covering it (a point on a shared edge to the lowest grid code; a point in
a sliver gap to the nearest grid within ``SNAP_M`` metres), then to that grid's community and the
community's street. Proposals escalate grid → community → street over
:func:`geodata.store.nearest.nearest_responders`. Coordinates WGS84 degrees; distances metres.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import text
from sqlalchemy.engine import Connection

from geodata.store.nearest import nearest_responders
from gridmap import dispatch as rules
from gridmap.contract import SERVICE_RADIUS_M

#: A point outside every grid (a sliver gap between digitised polygons) is routed to the nearest
#: grid within this many metres; farther away it stays unrouted.
SNAP_M = 50.0
#: Responders proposed for a new incident.
PROPOSE_K = 5


def route_joins(p: str) -> str:
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


ROUTE_COLUMNS = ("rg.grid_code AS grid_code, COALESCE(rg.community_code, rc.code) AS community_code, "
                  "COALESCE(rc.street_code, rs.code) AS street_code")
_ROUTE_SQL = text(f"SELECT {ROUTE_COLUMNS} FROM (SELECT 1) one "
                  + route_joins("ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)"))


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
