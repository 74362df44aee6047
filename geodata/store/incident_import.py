"""Bulk import of incidents: one transaction, COPY into a staging table, routed and upserted in PostGIS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import text
from sqlalchemy.engine import Engine

from geodata.jsonenc import dumps
from geodata.store.incidents import clock_dues, get_row, proposal_json, work_calendar
from geodata.store.routing import PROPOSE_K, ROUTE_COLUMNS, SNAP_M, propose, route_joins
from gridmap import dispatch as rules
from gridmap.cells import points_to_cells, to_signed
from gridmap.contract import H3_POINT_RES, SERVICE_RADIUS_M
from gridmap.deadlines import DeadlineRules


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


def _prepare_streets(conn) -> list[str]:
    """Partitions for new streets, stored incidents that changed street moved; the ids already stored."""
    from geodata.store.partitions import ensure_street_partitions

    codes = conn.execute(text("SELECT DISTINCT street_code FROM _routed_incidents")).scalars().all()
    ensure_street_partitions(conn, codes, ("incidents",))
    conn.execute(text(
        "UPDATE incidents t SET street_code = r.street_code FROM _routed_incidents r "
        "JOIN incident_street l ON l.incident_id = r.incident_id WHERE t.incident_id = r.incident_id "
        "AND t.street_code IS NOT DISTINCT FROM l.street_code AND l.street_code IS DISTINCT FROM r.street_code"))
    return list(conn.execute(text("SELECT incident_id FROM _routed_incidents JOIN incident_street USING (incident_id)"))
                .scalars())


# More than five arguments on purpose: keyword tuning of routing, proposals and deadlines.
def import_incidents(engine: Engine, gdf: gpd.GeoDataFrame, calendar: rules.WorkCalendar | None = None,  # noqa: PLR0913
                     snap_m: float = SNAP_M, k: int = PROPOSE_K, radius_m: float = SERVICE_RADIUS_M,
                     deadline_rules: DeadlineRules | None = None) -> IncidentImport:
    """Import incidents (``geodata.io.read_layer(..., "incidents")``) routed to grids, with deadlines.

    In one transaction: rows are upserted by ``incident_id``; each is routed to its grid, community
    and street in PostGIS (:func:`route_point` rules, ``snap_m`` metres); ``status`` is mapped onto the
    life cycle (``网格员关闭`` → closed); ``reported_at`` without a zone is China Standard Time; both
    deadlines (接单 ``respond_due_at``, 办结 ``deadline_at``) come from ``deadline_rules`` by category and
    response kind, counting working days by ``calendar`` merged with the ``holidays`` table — the same
    rule as a staff report (:func:`geodata.store.incidents.clock_dues`); open incidents get proposed
    responders within ``radius_m`` metres.
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
        cal = work_calendar(conn, calendar)
        dues = [clock_dues(deadline_rules, cal, r, c, kd) for r, c, kd in zip(reported, cats, kinds)]
        cur_raw = conn.connection.driver_connection
        assert cur_raw is not None  # an open Connection always holds its psycopg connection
        with cur_raw.cursor() as cur:
            cur.execute("CREATE TEMP TABLE _stage_incidents (incident_id text, category text, level int, status text, "
                        "required_skill text, reported_at timestamptz, respond_due_at timestamptz, deadline_at timestamptz, "
                        "source text, "
                        "response_kind text, h3 bigint, geom geometry(Point, 4326)) ON COMMIT DROP")
            with cur.copy("COPY _stage_incidents FROM STDIN") as cp:
                for row in zip([str(i) for i in gdf["incident_id"]], cats, levels, statuses, skills, reported,
                               [d[0] for d in dues], [d[1] for d in dues], sources, kinds, h3, wkb):
                    cp.write_row(row)
        cols = ("category, level, status, required_skill, reported_at, respond_due_at, deadline_at, source, "
                "response_kind, h3, geom, "
                "grid_code, community_code, street_code")
        # Routed first, so the street (the partition key, migration 0014) is known before the upsert.
        conn.execute(text(
            f"CREATE TEMP TABLE _routed_incidents ON COMMIT DROP AS SELECT s.*, {ROUTE_COLUMNS} "
            "FROM _stage_incidents s " + route_joins("s.geom")), {"snap": float(snap_m)})
        stored = _prepare_streets(conn)
        rows = conn.execute(text(
            f"INSERT INTO incidents (incident_id, {cols}) SELECT incident_id, {cols} FROM _routed_incidents"
            + " ON CONFLICT (street_code, incident_id) DO UPDATE SET "
            + ", ".join(f"{c} = EXCLUDED.{c}" for c in (c.strip() for c in cols.split(",")))
            + ", updated_at = now() RETURNING incident_id, incident_id <> ALL(:stored) AS inserted, grid_code, status"),
            {"stored": stored}).all()
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
            inc = get_row(conn, r.incident_id)
            lv, cands = propose(conn, inc["lon"], inc["lat"], inc, skill=inc["required_skill"], k=k, radius_m=radius_m)
            conn.execute(text("UPDATE incidents SET escalation_level = :lv, escalated = :e, proposed = CAST(:p AS jsonb) "
                              "WHERE incident_id = :i"),
                         {"lv": lv, "e": lv not in (None, "grid"), "i": r.incident_id,
                          "p": dumps(proposal_json(cands))})
            res.proposed += 1
    return res
