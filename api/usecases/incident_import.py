"""Use case: bulk import of incidents (``gridmap import incidents FILE``) under the deployment's deadline
rules. No Typer here: the command reads the file and the settings and calls :func:`import_incidents`."""

from __future__ import annotations

import geopandas as gpd
from sqlalchemy.engine import Engine

from api.usecases.deadlines import DeadlinePolicy
from geodata.store.incident_import import IncidentImport
from geodata.store.incident_import import import_incidents as store_import


def import_incidents(engine: Engine, gdf: gpd.GeoDataFrame, deadlines: DeadlinePolicy | None = None) -> IncidentImport:
    """Route and upsert ``gdf`` (an ``incidents`` layer, WGS84) in one transaction; each incident's 接单
    and 办结 deadlines follow ``deadlines`` (:func:`api.usecases.deadlines.deadline_policy`; the policy
    defaults when None), exactly as a staff report of the same category and time would get them."""
    policy = deadlines or DeadlinePolicy()
    return store_import(engine, gdf, calendar=policy.calendar, deadline_rules=policy.rules)
