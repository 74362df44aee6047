"""``gridmap map coverage|service|links|incidents|redraw``: an HTML map (and PNG) from a scenario or a plan.

Parses the options, calls :func:`api.usecases.maps.write_map`, prints what was written. The Tianditu
key and the Chromium path come from the settings (``GRIDMAP_TIANDITU_KEY``, ``GRIDMAP_CHROMIUM``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from api.commands.common import COORDS_HELP, console, fail
from api.usecases.maps import MAP_KINDS, MapOptions, write_map


def _parse_at(at: str | None) -> datetime | None:
    """The ``--at`` time (ISO 8601), or None; a bad value stops with a message."""
    if at is None:
        return None
    try:
        return datetime.fromisoformat(at)
    except ValueError:
        fail(f"--at {at!r} is not an ISO 8601 time (e.g. 2024-05-01T09:00)")


def map_command(
    kind: str = typer.Argument(..., help="coverage | service | links | incidents | redraw"),
    scenario: Path = typer.Argument(..., help="Scenario folder or GeoPackage (also a plan's plan.gpkg)."),
    out: Path = typer.Option(Path("map.html"), "--out", "-o", help="HTML file to write."),
    tiles: str = typer.Option("osm", "--tiles", help="Base tiles: osm | amap (GCJ-02 shifted) | tianditu "
                                                     "(GRIDMAP_TIANDITU_KEY) | none (offline)."),
    png: Path = typer.Option(None, "--png", help="Also write a PNG screenshot (headless Chromium)."),
    title: str = typer.Option(None, "--title", help="Map title (default per map kind)."),
    grid: str = typer.Option(None, "--grid", help="links: the grid to show."),
    member: str = typer.Option(None, "--member", help="links: one member's own households only."),
    names: bool = typer.Option(False, "--names", help="links: show residents' names unmasked (personal data)."),
    incidents: Path = typer.Option(None, "--incidents", help="incidents: an incidents layer file (else the scenario's)."),
    sites: int = typer.Option(0, "--sites", help="service: propose this many new sites (MCLP)."),
    walk: bool = typer.Option(False, "--walk", help="service: walking areas along the scenario's roads."),
    coords: str = typer.Option("wgs84", "--coords", help=COORDS_HELP),
    seed: int = typer.Option(0, "--seed", help="redraw: random seed of the districting."),
    at: str = typer.Option(None, "--at", help="incidents: judge 红黄绿灯 at this time (ISO 8601, CST if no zone; "
                                               "default now)."),
):
    """Draw a map as one HTML page (and optionally a PNG) from a scenario or a plan's output."""
    from api.commands.common import read
    from api.settings import get_settings
    from geodata.scenario import load_scenario
    from maps.base import MapError, check_tiles
    from maps.render import BrowserError

    kind = kind.strip().lower()
    if kind not in MAP_KINDS:
        fail(f"unknown map {kind!r}: use one of {', '.join(MAP_KINDS)}")
    try:
        tiles = check_tiles(tiles)
    except MapError as e:
        fail(str(e))
    if sites < 0:
        fail("--sites must be 0 or more")
    notes: list[str] = []
    layers = load_scenario(scenario, coords=coords, notes=notes)
    if incidents is not None:
        layers["incidents"] = read(incidents, "incidents", coords=coords, make_ids=True)
    for n in notes:
        console.print(f"[yellow]note[/] {n}", markup=True)
    settings = get_settings()
    opts = MapOptions(tiles=tiles, title=title, grid=grid, member=member, show_names=names, sites=sites, walk=walk,
                      seed=seed, at=_parse_at(at), tianditu_key=settings.tianditu_key)
    try:
        with console.status(f"drawing the {kind} map"):
            written = write_map(kind, layers, opts, out, png=png, chromium=settings.chromium)
    except (MapError, BrowserError) as e:
        fail(str(e))
    console.print(f"wrote [bold]{written.html}[/] ({written.html.stat().st_size / 1e6:.2f} MB)", markup=True)
    if written.png is not None:
        console.print(f"wrote [bold]{written.png}[/] (drawn in {written.drawn_s:.2f} s)", markup=True)
