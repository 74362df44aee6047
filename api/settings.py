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

    model_config = SettingsConfigDict(env_prefix="GRIDMAP_", extra="ignore", env_file_encoding="utf-8")

    database_url: str = Field(DEFAULT_DATABASE_URL, description="PostGIS URL (postgresql:// or postgresql+psycopg://).")
    holidays: Path | None = Field(None, description="Holiday calendar file (YYYY-MM-DD[,holiday|workday] per line).")
    gc_freeze: bool = Field(False, description=(
        "Move every object alive when the server has started out of the garbage collector's reach "
        "(gc.freeze), so a full collection scans only what requests allocate: the hot paths' p99 fell "
        "from 55 to 11 ms. `gridmap serve` turns it on; off under tests, which build many apps in one process."))
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0, description="Largest request body accepted (413 above).")
    anonymous_body_bytes: int = Field(64 * 1024, gt=0, description=(
        "Largest body accepted before a valid token is seen (413 above): a request without a token is "
        "never parsed at full size."))
    auth_failures_per_minute: int = Field(20, gt=0, description=(
        "Failed token checks (401) one client address may make per minute before it gets 429 with Retry-After."))
    gap_min_households: int = Field(5, ge=1, description=(
        "k of /gaps for roles without personal-data rights: H3 cells with fewer households are merged into "
        "their parent cell or left out, so no single household is located."))
    gap_max_resolution_masked: int = Field(9, ge=7, le=11, description=(
        "Finest H3 resolution of /gaps for roles without personal-data rights (9: cells of ~0.1 km²)."))
    docs_enabled: bool = Field(True, description="Serve the OpenAPI docs at /docs (assets from the package).")
    chromium: str | None = Field(None, description="Path of the Chromium binary (default: chromium on PATH).")
    tianditu_key: str = Field("", description="Tianditu browser key, needed for Tianditu base maps.")
    basemap: Literal["none", "osm", "amap", "tianditu"] = Field(
        "none", description="Default base map of the web pages (none works offline).")
    session_max_age_s: int = Field(8 * 3600, gt=0, description="Server-side lifetime of a login session.")
    secure_cookies: bool = Field(False, description="Mark session cookies Secure (set true behind https).")
    report_categories: tuple[str, ...] = Field(
        ("环境卫生", "设施报修", "矛盾纠纷", "安全隐患", "求助服务"), min_length=1, description=(
            "Categories residents choose from at /report (a JSON list, e.g. GRIDMAP_REPORT_CATEGORIES='[\"环境卫生\", "
            "\"求助服务\"]'); 求助服务 reports are needs matched to members' skills."))
    upload_dir: Path = Field(Path("var/uploads"), description="Folder for uploaded photos (outside the database).")
    photo_max_bytes: int = Field(8 * 1024 * 1024, gt=0, description="Largest photo accepted (JPEG/PNG, bytes).")
    visit_every_days: dict[str, int] = Field({"独居老人": 7}, description=(
        "走访频次: days between visits per household tag (JSON, e.g. {\"独居老人\": 7, \"残疾人\": 14})."))
    visit_default_days: int = Field(30, gt=0, description="Days between visits of households without those tags.")
    deadlines_file: Path | None = Field(None, description=(
        "Incident deadline windows per response kind and category (TOML, or JSON if it ends in .json): "
        "接单 respond and 办结 complete clocks, e.g. [categories.\"安全生产\"] respond = {hours = 2}."))
    notify_webhook_url: str | None = Field(None, description=(
        "URL the reminder job POSTs each notice to as JSON (an SMS/WeCom gateway); none: in-app notices only."))
    weekly_report_dir: Path = Field(Path("var/reports"), description=(
        "Folder the weekly job writes each street's report to (每周报表, <street>/<street>-<monday>.xlsx)."))


ENV_FILE_VARIABLE = "GRIDMAP_ENV_FILE"


def read_settings(env_file: str | Path | None = None) -> Settings:
    """Settings from ``env_file`` (a ``.env`` file of ``GRIDMAP_<NAME>=value`` lines), then from the
    environment for the names the file does not set. The file wins because it is the explicit choice
    (``gridmap serve`` writes the settings it resolved from its options and the environment there)."""
    if not env_file:
        return Settings()
    from dotenv import dotenv_values

    import json

    given = {name[len("GRIDMAP_"):].lower(): value for name, value in dotenv_values(env_file).items()
             if name.startswith("GRIDMAP_") and name != ENV_FILE_VARIABLE and value is not None}
    # Lists, tuples and mappings are written as JSON (as the environment source reads them too).
    for name, field in Settings.model_fields.items():
        if name in given and (field.default_factory is not None or isinstance(field.default, (dict, list, tuple))):
            given[name] = json.loads(given[name])
    return Settings(**given)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once: the environment and the ``.env`` file it names in
    ``GRIDMAP_ENV_FILE`` (which is how ``gridmap serve --workers N`` hands its settings to the workers)."""
    import os

    return read_settings(os.environ.get(ENV_FILE_VARIABLE))


def to_env_file(settings: Settings, path: Path) -> Path:
    """Write ``settings`` as ``GRIDMAP_<NAME>=value`` lines to ``path`` (mode 600: it may hold a
    database password) so worker processes read the same settings."""
    import json

    lines = []
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"GRIDMAP_{name.upper()}={json.dumps(text, ensure_ascii=False)}")
    lines.append(f"{ENV_FILE_VARIABLE}={json.dumps(str(path))}")  # so a worker finds the file again
    path.touch(mode=0o600)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


__all__ = ["Settings", "get_settings", "read_settings", "to_env_file", "DEFAULT_DATABASE_URL", "ENV_FILE_VARIABLE"]
