"""``gridmap serve`` — run the HTTP API (FastAPI under uvicorn)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from api.commands.common import console, fail


def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    database_url: str = typer.Option(None, "--database-url", envvar="GRIDMAP_DATABASE_URL",
                                     help="PostGIS URL (default: GRIDMAP_DATABASE_URL or the local default)."),
    holidays: Path = typer.Option(None, "--holidays", exists=True, dir_okay=False,
                                  help="Holiday calendar file (YYYY-MM-DD[,holiday|workday] per line) for "
                                       "3-working-day deadlines; sets GRIDMAP_HOLIDAYS."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Worker processes."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level (access log off below info)."),
):
    """Serve the API (docs at /docs, database reachability at /health)."""
    import uvicorn

    if database_url:
        os.environ["GRIDMAP_DATABASE_URL"] = database_url
    if holidays is not None:
        from geodata.store.dispatch import read_calendar_file

        try:
            read_calendar_file(holidays)
        except ValueError as e:
            fail(str(e))
        os.environ["GRIDMAP_HOLIDAYS"] = str(holidays.resolve())
    console.print(f"gridmap API on http://{host}:{port}  (docs: /docs, health: /health)")
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level,
                access_log=log_level in ("debug", "trace", "info"))
