"""``gridmap plan`` — the main job on files (no database needed)."""

from __future__ import annotations

from pathlib import Path

import typer

from api.commands.common import COORDS_HELP, console


def plan_command(
    scenario: Path = typer.Argument(..., help="Folder of layer files (households.geojson, grids.geojson …) or a GeoPackage."),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Output folder for plan.gpkg, summary.json and maps/."),
    coords: str = typer.Option("wgs84", "--coords", help=COORDS_HELP),
    redraw: bool = typer.Option(False, "--redraw", help="Redraw grids to the size standard before the other steps."),
    maps: bool = typer.Option(True, "--maps/--no-maps", help="Write HTML maps into OUTDIR/maps/."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the engines that use one."),
):
    """Run the whole plan on a scenario: grid census, and every engine step; writes OUTDIR/plan.gpkg + summary.json."""
    from api.plan import PlanOptions, run_plan, summary_table

    ctx = run_plan(scenario, out, PlanOptions(coords=coords, redraw=redraw, maps=maps, seed=seed), console=console)
    for n in ctx.notes:
        console.print(f"[yellow]note[/] {n}", markup=True)
    console.print(summary_table(ctx))
    console.print(f"wrote [bold]{out / 'plan.gpkg'}[/] and [bold]{out / 'summary.json'}[/]", markup=True)
