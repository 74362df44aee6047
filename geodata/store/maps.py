"""Read one region's layers from PostGIS for the maps (``GET /maps/{kind}?region=CODE``).

A region is a street (街道), community (社区) or grid (网格) code; it is expanded down the
hierarchy with :func:`geodata.store.auth.expand_regions`. Layers come back as WGS84 GeoDataFrames
with contract column names, ready for ``api.usecases.maps.build_map``:

* ``grids``, ``communities``, ``streets`` of the region;
* ``households`` and ``members`` in its grids — *without* phone and ID numbers; names only when
  asked (``with_names``), for a responder's own map;
* ``service_centres`` within ``centre_margin_m`` metres of the region's grids (a centre just
  outside still serves households inside);
* ``incidents`` routed to its grids, with deadlines and close times;
* ``links`` of the current 包片联户 run for its households.
"""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Engine

from geodata.store.auth import expand_regions

#: Service centres this far (metres) outside the region's grids are still drawn.
CENTRE_MARGIN_M = 1500.0

_LAYERS = ("grids", "communities", "streets", "households", "members", "service_centres", "incidents", "links")


def _read(conn, sql: str, params: dict) -> gpd.GeoDataFrame:
    gdf = gpd.read_postgis(text(sql), conn, geom_col="geom", params=params, crs="EPSG:4326")
    return gdf.rename_geometry("geometry")


def _tags(v):
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v) or None
    return v


def load_region(engine: Engine, region: str, layers=_LAYERS, *, with_names: bool = False,
                member_id: str | None = None, centre_margin_m: float = CENTRE_MARGIN_M) -> dict[str, gpd.GeoDataFrame]:
    """The layers of one region (WGS84), see the module docstring.

    Parameters
    ----------
    region : street, community or grid code.
    layers : which layers to read.
    with_names : include residents' and members' ``name`` (personal data) — else no name column.
    member_id : read only this member and the households of their current links (a responder's
        own map); ``households``/``links`` are then limited to those households.
    centre_margin_m : service centres up to this many metres outside the region's grids are read.

    Returns
    -------
    dict of layer name → GeoDataFrame (``links`` is a plain DataFrame); grids empty when the region
    is unknown.
    """
    scope = expand_regions(engine, [region])
    codes = sorted(scope.grids)
    p = {"codes": codes}
    out: dict[str, gpd.GeoDataFrame] = {}
    name = ", name" if with_names else ""
    with engine.connect() as conn:
        if "grids" in layers:
            out["grids"] = _read(conn, "SELECT grid_code, name, community_code, kind, has_branch, branch_name, geom "
                                       "FROM grids WHERE grid_code = ANY(:codes) ORDER BY grid_code", p)
        if "communities" in layers:
            out["communities"] = _read(conn, "SELECT code, name, street_code, geom FROM communities "
                                             "WHERE code = ANY(:c) ORDER BY code", {"c": sorted(scope.communities)})
        if "streets" in layers:
            out["streets"] = _read(conn, "SELECT code, name, geom FROM streets WHERE code = ANY(:c) ORDER BY code",
                                   {"c": sorted(scope.streets)})
        own = None
        if member_id is not None:
            own = conn.execute(text(
                "SELECT l.household_id FROM links l JOIN link_runs r ON r.run_id = l.run_id "
                "WHERE r.is_current AND l.member_id = :m"), {"m": member_id}).scalars().all()
        if "households" in layers:
            sql = f"SELECT household_id, grid_code, size, tags{name}, geom FROM households WHERE grid_code = ANY(:codes)"
            params = dict(p)
            if own is not None:
                sql += " AND household_id = ANY(:own)"
                params["own"] = list(own)
            hh = _read(conn, sql + " ORDER BY household_id", params)
            hh["tags"] = [_tags(v) for v in hh["tags"]]
            out["households"] = hh
        if "members" in layers:
            sql = (f"SELECT member_id, grid_code, kind, skills, available, min_links, max_links{name}, geom "
                   "FROM members WHERE grid_code = ANY(:codes)")
            params = dict(p)
            if member_id is not None:
                sql += " AND member_id = :m"
                params["m"] = member_id
            mm = _read(conn, sql + " ORDER BY member_id", params)
            mm["skills"] = [_tags(v) for v in mm["skills"]]
            out["members"] = mm
        if "service_centres" in layers:
            out["service_centres"] = _read(conn, """
                SELECT c.centre_id, c.name, c.kind, c.radius_m, c.geom FROM service_centres c
                WHERE EXISTS (SELECT 1 FROM grids g WHERE g.grid_code = ANY(:codes)
                              AND ST_DWithin(g.geom::geography, c.geom::geography, :m))
                ORDER BY c.centre_id""", {**p, "m": float(centre_margin_m)})
        if "incidents" in layers:
            out["incidents"] = _read(conn, """
                SELECT incident_id, category, level, status, required_skill, reported_at, deadline_at, closed_at,
                       grid_code, source, assigned_member_id, geom
                FROM incidents WHERE grid_code = ANY(:codes) ORDER BY reported_at, incident_id""", p)
        if "links" in layers:
            sql = ("SELECT DISTINCT ON (l.household_id) l.household_id, l.member_id, l.distance_m, l.visit_order "
                   "FROM links l JOIN link_runs r ON r.run_id = l.run_id "
                   "JOIN households h ON h.household_id = l.household_id "
                   "WHERE r.is_current AND h.grid_code = ANY(:codes)")
            params = dict(p)
            if member_id is not None:
                sql += " AND l.member_id = :m"
                params["m"] = member_id
            out["links"] = pd.read_sql(text(sql + " ORDER BY l.household_id, l.run_id DESC"), conn, params=params)
    return out
