"""Shared fixtures. Tests that touch storage get a fresh PostgreSQL + PostGIS database of their own.

The server comes from ``GRIDMAP_TEST_ADMIN_URL`` (default: the local one, as set up by
``scripts/ensure_postgres.sh`` which ``make test`` runs first). Each pytest process creates its own
database ``gridmap_t_<pid>_<n>``, migrates it to head, and drops it at the end, so parallel runs and
re-runs never see each other's rows. There is no SQLite or mock stand-in: without PostGIS the DB
tests fail loudly.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

# Cases shared between tiers live in tests/*_cases.py; their helpers assert, so rewrite them too.
pytest.register_assert_rewrite("linkage_cases", "coverage_cases", "dispatch_cases", "districting_cases", "maps_cases",
                               "redraw_cases", "ticket_cases", "validation_cases")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GRIDMAP_SHARED", ROOT.parent / "shared"))
HANGZHOU = SHARED / "geodata" / "hangzhou-xiacheng"
SHANGHAI = SHARED / "geodata" / "shanghai-bund"
SAMPLE = ROOT / "geodata" / "sample_data" / "shanghai_bund"
ADMIN_URL = os.environ.get("GRIDMAP_TEST_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _with_db(url: str, db: str) -> str:
    return str(sa.engine.make_url(url).set(database=db).render_as_string(hide_password=False))


def create_database(prefix: str = "gridmap_t") -> str:
    """Create an empty database with PostGIS on the test server; returns its URL."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = _with_db(ADMIN_URL, name)
    eng = sa.create_engine(url)
    with eng.begin() as c:
        c.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))
    eng.dispose()
    return url


def drop_database(url: str) -> None:
    from geodata.store.session import make_engine

    make_engine.cache_clear()
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def db_url():
    """URL of a fresh PostGIS database migrated to head, dropped after the session."""
    from geodata.store import migrate

    url = create_database()
    migrate.upgrade(url)
    yield url
    drop_database(url)


@pytest.fixture()
def engine(db_url):
    """Engine on the session database with every table emptied before the test."""
    from geodata.store.session import make_engine

    eng = make_engine(db_url)
    truncate_all(eng)
    return eng


def truncate_all(eng) -> None:
    from geodata.store.auth import clear_cache

    clear_cache()  # cached tokens/region scopes belong to the rows being removed
    with eng.begin() as c:
        tables = [r[0] for r in c.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname='public' "
            "AND tablename NOT IN ('alembic_version','spatial_ref_sys')"))]
        if tables:
            c.execute(sa.text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="session")
def hangzhou() -> Path:
    """Folder of the real Hangzhou (former 下城区) layers."""
    assert HANGZHOU.exists(), f"shared data missing: {HANGZHOU}"
    return HANGZHOU


@pytest.fixture(scope="session")
def shanghai() -> Path:
    """Folder of the Shanghai Bund OSM extract."""
    assert SHANGHAI.exists(), f"shared data missing: {SHANGHAI}"
    return SHANGHAI


@pytest.fixture(scope="session")
def hangzhou_grids(hangzhou):
    """The real Hangzhou grids, read and repaired as the importer does (297 grids from 332 rows)."""
    from geodata.io import read_layer

    return read_layer(hangzhou / "grids.geojson", "grids", fix=True)


@pytest.fixture(scope="session")
def hangzhou_scenario(hangzhou_grids):
    """Synthesised households/members/centres inside the real Hangzhou grids (seed 1)."""
    from geodata.synth import synth_in_grids

    return synth_in_grids(hangzhou_grids, seed=1)


# Fixtures shared by more than one tier (defined beside their cases, registered here for every tier).
from coverage_cases import scenario  # noqa: E402,F401
from districting_cases import square  # noqa: E402,F401
from maps_cases import hz, small  # noqa: E402,F401
