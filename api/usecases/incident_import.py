"""Use case: bulk import of incidents (``gridmap import incidents FILE``) under the deployment's deadline
rules. No Typer here: the command reads the file and the settings and calls :func:`import_incidents`."""

from __future__ import annotations

import geopandas as gpd
from sqlalchemy.engine import Engine

from api.usecases.audit import CLI, audited, cli_detail
from api.usecases.deadlines import DeadlinePolicy
from geodata.store.importer import AUDIT_MAX_IDS
from geodata.store.incident_import import IncidentImport
from geodata.store.incident_import import import_incidents as store_import


def import_incidents(engine: Engine, gdf: gpd.GeoDataFrame, deadlines: DeadlinePolicy | None = None) -> IncidentImport:
    """Route and upsert ``gdf`` (an ``incidents`` layer, WGS84) in one transaction; each incident's 接单
    and 办结 deadlines follow ``deadlines`` (:func:`api.usecases.deadlines.deadline_policy`; the policy
    defaults when None), exactly as a staff report of the same category and time would get them. The
    audit row (action ``import``, what ``incidents``, ids capped at
    :data:`geodata.store.importer.AUDIT_MAX_IDS`) is written in the same transaction, as the command line
    (the only face that bulk-imports incidents: role ``admin``, ``by = "cli"`` and the OS user)."""
    policy = deadlines or DeadlinePolicy()
    with audited(engine, CLI, "import", "incidents") as (tx, entry):
        done = store_import(tx, gdf, calendar=policy.calendar, deadline_rules=policy.rules)
        ids = [str(i) for i in gdf["incident_id"]] if done.rows else []
        entry.ids = ids[:AUDIT_MAX_IDS]
        entry.detail = {**cli_detail(), "rows": done.rows, "inserted": done.inserted, "updated": done.updated,
                        "routed": done.routed, "ids_cut": len(ids) > AUDIT_MAX_IDS}
        if not ids:
            entry.nothing_written()
    return done
