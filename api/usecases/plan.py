"""Use case: the main job — ``gridmap plan SCENARIO --out OUTDIR`` on files, no database.

Reads a scenario (folder or GeoPackage), then runs :data:`PLAN_STEPS` in that order: redraw (only
with ``redraw``), census (households and members into grids, counts, status), 包片联户 links,
coverage gaps, maps. Writes ``OUTDIR/plan.gpkg`` (one layer per result) and
``OUTDIR/summary.json``. Presentation (progress, tables) is the caller's: pass ``on_step``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import geopandas as gpd

from api.usecases.gaps import step_gaps
from api.usecases.links import step_links
from api.usecases.maps import step_maps
from api.usecases.redraw import step_redraw
from geodata.jsonenc import dumps_bytes
from gridmap import census


@dataclass
class PlanOptions:
    """What to plan and how (engines read what concerns them from ``extra``).

    Attributes
    ----------
    scenario : folder of layer files or a GeoPackage.
    outdir : folder for ``plan.gpkg``, ``summary.json`` and ``maps/``.
    coords : coordinate system of the input (``wgs84|gcj02|bd09|cgcs2000``).
    redraw : redraw grids to the size standard before the census.
    maps : write the HTML maps.
    seed : random seed of the engines that use one.
    extra : engine settings (``link_max_distance_m``, ``service_radius_m`` and ``walk_limit_m`` in
        metres, ``map_tiles``, ``tianditu_key`` …).
    """

    scenario: Path | None = None
    outdir: Path = Path("out")
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
    options: PlanOptions
    layers_out: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


@dataclass
class PlanResult:
    """What a plan produced: the summary (as in ``summary.json``), notes, files and result layers."""

    summary: dict
    notes: list[str]
    files: list[str]
    gpkg: Path
    summary_path: Path
    layers_out: dict[str, gpd.GeoDataFrame]


def _household_columns(households: gpd.GeoDataFrame) -> list[str]:
    """Columns of the plan's households layer (no names or phones: personal data stays out)."""
    if "size" in households.columns and "tags" in households.columns:
        return ["household_id", "grid_code", "size", "tags", "geometry"]
    return ["household_id", "grid_code", "geometry"]


def _grid_figures(status: gpd.GeoDataFrame, households, members, outside: int) -> dict:
    """``summary['grids']``: counts by status and households per grid."""
    counts = status["status"].value_counts().to_dict()
    return {
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


def step_census(ctx: PlanContext) -> None:
    """Households and members into grids; per-grid counts and status (ok/over/under/no branch/no members)."""
    layers = ctx.layers
    households = layers["households"]
    if "grids" not in layers or len(layers["grids"]) == 0:
        layers["grids"] = census.cell_grids(households)
        ctx.notes.append(f"no grids layer: {len(layers['grids'])} provisional grids derived from H3 resolution-8 cells "
                         "(run with --redraw to draw real ones)")
    grids = layers["grids"]
    households = layers["households"] = census.assign_grid_codes(households, grids)
    members = layers.get("members")
    if members is not None:
        members = layers["members"] = census.assign_grid_codes(members, grids)
    status = census.grid_counts(grids, households, members)
    outside = int(households["grid_code"].isna().sum())
    if outside:
        ctx.notes.append(f"{outside} households lie in no grid")
    ctx.layers_out["grids"] = status
    ctx.layers_out["households"] = households[_household_columns(households)]
    ctx.summary["grids"] = _grid_figures(status, households, members, outside)


#: The plan's steps, in the order they run. Redraw first (it changes the grids the census counts),
#: maps last (they draw every layer the steps before produced).
PLAN_STEPS: tuple[Callable[[PlanContext], None], ...] = (step_redraw, step_census, step_links, step_gaps, step_maps)


def step_name(step: Callable) -> str:
    """The short name of a step (``step_links`` → ``links``)."""
    return step.__name__.removeprefix("step_")


def _write_outputs(ctx: PlanContext) -> tuple[Path, Path]:
    """``plan.gpkg`` (one layer per result) and ``summary.json`` in ``ctx.outdir``."""
    from geodata.io import write_layer

    gpkg = ctx.outdir / "plan.gpkg"
    if gpkg.exists():
        gpkg.unlink()
    for name, gdf in ctx.layers_out.items():
        write_layer(gdf, gpkg, layer=name)
    ctx.summary["notes"] = ctx.notes
    ctx.summary["outputs"] = {"gpkg": str(gpkg), "layers": list(ctx.layers_out), "files": ctx.files}
    summary_path = ctx.outdir / "summary.json"
    summary_path.write_bytes(dumps_bytes(ctx.summary, indent=True))
    return gpkg, summary_path


def run_plan(options: PlanOptions, on_step: Callable[[str], None] | None = None) -> PlanResult:
    """Read ``options.scenario``, run :data:`PLAN_STEPS` in order and write the outputs.

    ``on_step(name)`` is called before reading (``"read"``) and before each step, for progress.
    Raises :class:`geodata.errors.InputError` on bad input (nothing is written then).
    """
    from geodata.scenario import load_scenario

    if options.scenario is None:
        raise ValueError("PlanOptions.scenario is required")
    report = on_step or (lambda name: None)
    outdir = Path(options.outdir)
    started = time.perf_counter()
    notes: list[str] = []
    report("read")
    layers = load_scenario(options.scenario, coords=options.coords, notes=notes)
    outdir.mkdir(parents=True, exist_ok=True)
    ctx = PlanContext(layers=layers, outdir=outdir, options=options, notes=notes)
    ctx.summary["scenario"] = str(options.scenario)
    ctx.summary["layers_read"] = {k: int(len(v)) for k, v in layers.items()}
    timings = {}
    for step in PLAN_STEPS:
        report(step_name(step))
        t = time.perf_counter()
        step(ctx)
        timings[step_name(step)] = round(time.perf_counter() - t, 3)
    ctx.summary["seconds"] = {"total": round(time.perf_counter() - started, 3), **timings}
    gpkg, summary_path = _write_outputs(ctx)
    return PlanResult(summary=ctx.summary, notes=ctx.notes, files=ctx.files, gpkg=gpkg, summary_path=summary_path,
                      layers_out=ctx.layers_out)
