"""The main job: ``gridmap plan SCENARIO --out OUTDIR``, on files, no database (the embedded default).

Reads a scenario (folder or GeoPackage), puts every household and member in its grid, counts and
classifies grids, then runs each registered engine step in turn. Writes ``OUTDIR/plan.gpkg`` (one
layer per result) and ``OUTDIR/summary.json``, and prints a summary table.

Engines add themselves by appending a ``step(ctx)`` function to ``STEPS``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import geopandas as gpd
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridmap import census
from geodata.io import write_layer
from geodata.scenario import load_scenario


@dataclass
class PlanOptions:
    """Switches of the plan job (engines read what concerns them)."""

    coords: str = "wgs84"
    redraw: bool = False
    maps: bool = True
    seed: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class PlanContext:
    """What a step sees: input layers, outputs so far, the summary, and where to write."""

    layers: dict[str, gpd.GeoDataFrame]
    outdir: Path
    console: Console
    options: PlanOptions
    layers_out: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def step_census(ctx: PlanContext) -> None:
    """Households and members into grids; per-grid counts and status (ok/over/under/no branch/no members)."""
    layers = ctx.layers
    households = layers["households"]
    if "grids" not in layers or len(layers["grids"]) == 0:
        layers["grids"] = census.cell_grids(households)
        ctx.notes.append(f"no grids layer: {len(layers['grids'])} provisional grids derived from H3 resolution-8 cells "
                         "(run with --redraw to draw real ones)")
    grids = layers["grids"]
    households = census.assign_grid_codes(households, grids)
    layers["households"] = households
    members = layers.get("members")
    if members is not None:
        members = census.assign_grid_codes(members, grids)
        layers["members"] = members
    status = census.grid_counts(grids, households, members)
    outside = int(households["grid_code"].isna().sum())
    if outside:
        ctx.notes.append(f"{outside} households lie in no grid")
    ctx.layers_out["grids"] = status
    ctx.layers_out["households"] = households[["household_id", "grid_code", "size", "tags", "geometry"]
                                              if "size" in households.columns and "tags" in households.columns
                                              else ["household_id", "grid_code", "geometry"]]
    counts = status["status"].value_counts().to_dict()
    ctx.summary["grids"] = {
        "total": int(len(status)),
        "by_status": {k: int(v) for k, v in counts.items()},
        "households": int(len(households)),
        "households_outside_grids": outside,
        "members": int(len(members)) if members is not None else 0,
        "households_per_grid": {
            "min": int(status["households"].min()) if len(status) else 0,
            "median": float(status["households"].median()) if len(status) else 0.0,
            "max": int(status["households"].max()) if len(status) else 0,
        },
    }


#: The engine steps, in order. Each engine appends its own ``step(ctx)``.
STEPS: list[Callable[[PlanContext], None]] = [step_census]

from api.commands.link import step_links  # noqa: E402  (包片联户: links layer + summary figures)

STEPS.append(step_links)

from api.commands.redraw import step_redraw  # noqa: E402  (网格划分, only with --redraw: before the census)

STEPS.insert(0, step_redraw)

from api.commands.gaps import step_gaps  # noqa: E402  (coverage gaps: blank grids, 15-minute circle)

STEPS.append(step_gaps)


def run_plan(scenario: Path, outdir: Path, options: PlanOptions | None = None, console: Console | None = None) -> PlanContext:
    """Run every step on ``scenario`` and write ``outdir/plan.gpkg`` and ``outdir/summary.json``."""
    options = options or PlanOptions()
    console = console or Console()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    t0 = time.perf_counter()
    with console.status("reading scenario"):
        layers = load_scenario(scenario, coords=options.coords, notes=notes)
    ctx = PlanContext(layers=layers, outdir=outdir, console=console, options=options, notes=notes)
    ctx.summary["scenario"] = str(scenario)
    ctx.summary["layers_read"] = {k: int(len(v)) for k, v in layers.items()}
    timings = {}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("planning", total=len(STEPS))
        for step in STEPS:
            name = step.__name__.removeprefix("step_")
            progress.update(task, description=f"[bold]{name}[/]")
            t = time.perf_counter()
            step(ctx)
            timings[name] = round(time.perf_counter() - t, 3)
            progress.advance(task)
    gpkg = outdir / "plan.gpkg"
    if gpkg.exists():
        gpkg.unlink()
    for name, gdf in ctx.layers_out.items():
        write_layer(gdf, gpkg, layer=name)
    ctx.summary["seconds"] = {"total": round(time.perf_counter() - t0, 3), **timings}
    ctx.summary["notes"] = ctx.notes
    ctx.summary["outputs"] = {"gpkg": str(gpkg), "layers": list(ctx.layers_out), "files": ctx.files}
    (outdir / "summary.json").write_text(json.dumps(ctx.summary, ensure_ascii=False, indent=2, default=_json_default),
                                         encoding="utf-8")
    return ctx


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def summary_table(ctx: PlanContext) -> Table:
    """A Rich table of the headline figures."""
    s = ctx.summary
    t = Table(title="gridmap plan", show_header=True, header_style="bold")
    t.add_column("figure")
    t.add_column("value", justify="right")
    g = s.get("grids", {})
    t.add_row("households", f"{g.get('households', 0):,}")
    t.add_row("members (党员)", f"{g.get('members', 0):,}")
    t.add_row("grids", f"{g.get('total', 0):,}")
    for k, v in sorted(g.get("by_status", {}).items()):
        t.add_row(f"  grids {k}", f"{v:,}")
    if g.get("households_outside_grids"):
        t.add_row("households in no grid", f"{g['households_outside_grids']:,}")
    for key, rows in s.get("table", {}).items():
        for label, value in rows:
            t.add_row(label, str(value))
    return t


# Keep this the last registration: the maps draw every layer the steps above produced.
from api.commands.maps import step_maps  # noqa: E402

STEPS.append(step_maps)
