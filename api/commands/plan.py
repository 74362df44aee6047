"""``gridmap plan`` — the main job on files (no database needed): parse, run, present with Rich."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.commands.common import COORDS_HELP, console


def summary_table(summary: dict) -> Table:
    """A Rich table of a plan's headline figures (``summary.json``)."""
    t = Table(title="gridmap plan", show_header=True, header_style="bold")
    t.add_column("figure")
    t.add_column("value", justify="right")
    g = summary.get("grids", {})
    t.add_row("households", f"{g.get('households', 0):,}")
    t.add_row("members (党员)", f"{g.get('members', 0):,}")
    t.add_row("grids", f"{g.get('total', 0):,}")
    for k, v in sorted(g.get("by_status", {}).items()):
        t.add_row(f"  grids {k}", f"{v:,}")
    if g.get("households_outside_grids"):
        t.add_row("households in no grid", f"{g['households_outside_grids']:,}")
    for rows in summary.get("table", {}).values():
        for label, value in rows:
            t.add_row(label, str(value))
    return t


def plan_command(
    scenario: Path = typer.Argument(..., help="Folder of layer files (households.geojson, grids.geojson …) or a GeoPackage."),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Output folder for plan.gpkg, summary.json and maps/."),
    coords: str = typer.Option("wgs84", "--coords", help=COORDS_HELP),
    redraw: bool = typer.Option(False, "--redraw", help="Redraw grids to the size standard before the other steps."),
    maps: bool = typer.Option(True, "--maps/--no-maps", help="Write HTML maps into OUTDIR/maps/."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the engines that use one."),
    cluster: str = typer.Option(None, "--cluster", help="Run one task per street on Dask: local:N (N worker "
                                "processes here) or tcp://HOST:8786 (a running `dask scheduler`)."),
):
    """Run the whole plan on a scenario: grid census, and every engine step; writes OUTDIR/plan.gpkg + summary.json."""
    from api.settings import get_settings
    from api.usecases.plan import PLAN_STEPS, PlanOptions, run_plan

    options = PlanOptions(scenario=scenario, outdir=out, coords=coords, redraw=redraw, maps=maps, seed=seed,
                          extra={"tianditu_key": get_settings().tianditu_key})
    if cluster:
        return _plan_on_cluster(options, cluster)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("planning", total=len(PLAN_STEPS) + 1)
        started = []

        def on_step(name: str) -> None:
            if started:  # the step before this one is done
                progress.advance(task)
            started.append(name)
            progress.update(task, description=f"[bold]{name}[/]")

        result = run_plan(options, on_step=on_step)
        progress.advance(task)
    for n in result.notes:
        console.print(f"[yellow]note[/] {n}", markup=True)
    console.print(summary_table(result.summary))
    console.print(f"wrote [bold]{result.gpkg}[/] and [bold]{result.summary_path}[/]", markup=True)


def _plan_on_cluster(options, cluster: str) -> None:
    """``--cluster``: streets as Dask tasks, progress as streets done / total, failed streets named."""
    from api.usecases.scale import run_plan_cluster

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} streets"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("streets", total=None)

        def on_progress(done: int, total: int, street: str) -> None:
            progress.update(task, completed=done, total=total, description=f"[bold]street {street}[/]")

        try:
            result = run_plan_cluster(options, cluster, on_progress=on_progress)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--cluster") from exc
    for n in result.notes:
        console.print(f"[yellow]note[/] {n}", markup=True)
    console.print(summary_table(result.summary))
    for street, error in result.failed.items():
        console.print(f"[red]street {street} failed twice[/]: {error}", markup=True)
    console.print(f"wrote [bold]{result.layers_dir}[/] and [bold]{result.summary_path}[/]", markup=True)
    if result.failed:
        raise typer.Exit(1)
