"""Shared CLI pieces: the Rich console, the ``--coords`` option, reading a layer with a clear error."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from geodata.errors import InputError

if TYPE_CHECKING:  # only for the annotation: Rich is imported lazily at call time
    from rich.table import Table

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)

COORDS_HELP = "Coordinate system of the input: wgs84 (default), gcj02 (Amap/Tencent), bd09 (Baidu), cgcs2000."
CoordsOption = typer.Option("wgs84", "--coords", help=COORDS_HELP)


def read(path: Path, kind: str, coords: str = "wgs84", encoding: str | None = None, fix: bool = False,
         layer: str | None = None, make_ids: bool = False, sheet: str | None = None):
    """Read a contract layer, printing repair/encoding notes; InputError propagates to ``main``."""
    from geodata.io import read_layer

    notes: list[str] = []
    gdf = read_layer(path, kind, coords=coords, encoding=encoding, fix=fix, layer=layer, make_ids=make_ids, report=notes,
                     sheet=sheet)
    for n in notes:
        console.print(f"[yellow]note[/] {n}", markup=True)
    return gdf


def figures_table(title: str, rows) -> "Table":
    """A two-column Rich table (figure, value right-aligned) of ``(label, value)`` rows."""
    from rich.table import Table

    t = Table(title=title, header_style="bold")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for label, value in rows:
        t.add_row(str(label), str(value))
    return t


def settings():
    """The settings of this command (``api.settings.Settings``), read from the environment when it starts.

    Read afresh for each command rather than cached for the process, so one process running several
    commands (tests, ``CliRunner``) sees the environment each was started with.
    """
    from api.settings import Settings

    return Settings()


def db_url() -> str:
    """The PostGIS URL of this command (``GRIDMAP_DATABASE_URL`` or the local default)."""
    return settings().database_url


def db_engine():
    """A pooled engine on :func:`db_url` (``geodata.store.session.make_engine``)."""
    from geodata.store.session import make_engine

    return make_engine(db_url())


def fail(message: str, code: int = 2):
    """Stop with a red message and exit code ``code``."""
    console.print(f"[bold red]Error:[/] {message}", markup=True)
    raise typer.Exit(code)


__all__ = ["console", "err_console", "CoordsOption", "read", "fail", "figures_table", "InputError", "settings",
           "db_url", "db_engine"]
