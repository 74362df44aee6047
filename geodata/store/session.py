"""Engines and transactions for the PostGIS store.

The caller passes the database URL (the faces in ``api/`` take it from ``api.settings``; this
layer never reads the environment), e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/gridmap``.
A plain ``postgresql://`` URL is accepted and given the psycopg 3 driver.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/gridmap"


def database_url(url: str) -> str:
    """``url`` with the psycopg 3 driver named (``postgresql://`` → ``postgresql+psycopg://``)."""
    if not url:
        raise ValueError("no database URL given (set GRIDMAP_DATABASE_URL or pass --database-url)")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    elif url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://"):]
    return url


@lru_cache(maxsize=8)
def make_engine(url: str, pool_size: int = 10) -> Engine:
    """A pooled SQLAlchemy engine (psycopg 3) for ``url``; cached per URL.

    ``pool_pre_ping`` lets the pool drop connections that died while the server was down, so the
    service recovers by itself when PostgreSQL comes back. ``hide_parameters`` keeps statement
    parameters (which may be residents' names or phone numbers) out of exception texts and logs.
    """
    return create_engine(database_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                         pool_recycle=1800, connect_args={"connect_timeout": 5}, hide_parameters=True)


def ping(engine: Engine) -> bool:
    """True when the database answers ``SELECT 1``."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
