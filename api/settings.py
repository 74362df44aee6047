"""The service's settings, read once (pydantic-settings) and handed to the app and the command line.

Every value comes from an environment variable ``GRIDMAP_<NAME>`` (or a ``.env`` file named by
``GRIDMAP_ENV_FILE``); nothing in the code reads ``os.environ`` for configuration and nothing writes it.
Lower layers (geodata, maps) never read settings: the faces in ``api/`` pass the values they need as
arguments.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/gridmap"


class Settings(BaseSettings):
    """Configuration of one gridmap deployment (units in the field names: ``_bytes``, ``_s``, ``_m``)."""

    model_config = SettingsConfigDict(env_prefix="GRIDMAP_", extra="ignore")

    database_url: str = Field(DEFAULT_DATABASE_URL, description="PostGIS URL (postgresql:// or postgresql+psycopg://).")
    holidays: Path | None = Field(None, description="Holiday calendar file (YYYY-MM-DD[,holiday|workday] per line).")
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0, description="Largest request body accepted (413 above).")
    docs_enabled: bool = Field(True, description="Serve the OpenAPI docs at /docs (assets from the package).")
    chromium: str | None = Field(None, description="Path of the Chromium binary (default: chromium on PATH).")
    tianditu_key: str = Field("", description="Tianditu browser key, needed for Tianditu base maps.")
    basemap: Literal["none", "osm", "amap", "tianditu"] = Field(
        "none", description="Default base map of the web pages (none works offline).")
    session_max_age_s: int = Field(8 * 3600, gt=0, description="Server-side lifetime of a login session.")
    secure_cookies: bool = Field(False, description="Mark session cookies Secure (set true behind https).")
    upload_dir: Path = Field(Path("var/uploads"), description="Folder for uploaded photos (outside the database).")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from the environment once."""
    return Settings()


__all__ = ["Settings", "get_settings", "DEFAULT_DATABASE_URL"]
