"""Use case: the plan on a Dask cluster, one task per street (街道) — ``gridmap plan … --cluster``.

The scenario is GeoParquet partitioned by street (:mod:`geodata.parquet`; a plain scenario folder is
exported first). Each street is one task on one worker: it reads its own rows plus the halo (service
centres of neighbouring streets within the service radius), runs the plan's steps
(:data:`api.usecases.plan.PLAN_STEPS`: redraw when asked, census, 包片联户 links, gaps, maps) and
writes its result layers as ``OUTDIR/layers/<layer>/street=<code>/part-0.parquet``. It returns a
small *partial* (per-grid rows, counts, exact sums); one reduce task on the cluster turns the
partials into the same ``summary.json`` figures a single-machine run gives, and merges the H3 gap
cells of all streets (a gap area may cross a street border) into ``OUTDIR/layers/gap_cells``.

Why figures are equal, not merely close:

* Grids are partitioned whole, and households and members go to the street of their grid exactly
  as the census assigns them; linkage without cross-grid borrowing (the plan's default) solves each
  grid on its own, so links per street are the links of the whole run.
* Coverage of a household depends only on centres within the service radius; those are in the halo.
* Counts and sums are added; percentages, means and medians are recomputed from the sums and the
  per-grid rows, never averaged from per-street ratios. Distances are summed exactly (``math.fsum``)
  and rounded once, like the single run; they may differ from it in the last float bit only.

Not equal (stated, not hidden): with ``link_allow_cross_grid`` a short grid on a street border may
not borrow from the neighbouring street's grids (each street is solved alone; the summary says so);
a redraw runs per street (the districting engine works per community, so this matches a whole run
when communities do not cross streets); the maps are drawn per street under ``OUTDIR/streets/``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pandas as pd

from api.usecases.plan import PLAN_STEPS, PlanContext, PlanOptions, _grid_figures
from geodata.jsonenc import dumps as json_dumps

#: Columns of a grid's row kept in a street's partial (enough to recompute every grid figure).
GRID_ROW_COLUMNS = ("grid_code", "households", "members", "status", "blank", "blank_reason", "linked_households",
                    "members_needed", "covered_straight", "covered_walk")
#: Result layers that are merged on the reduce task instead of written per street.
MERGED_LAYERS = ("gap_cells",)
#: Figures of a linkage summary that are plain sums over streets.
LINK_SUMS = ("households", "linked", "unlinked", "members_available", "members_in_band", "members_below_min",
             "members_idle", "cross_grid_links", "grids_short", "members_needed")


@dataclass
class ClusterPlanResult:
    """What a cluster plan produced: the reduced summary, where it went, and the streets that failed."""

    summary: dict
    summary_path: Path
    layers_dir: Path
    failed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# one street, on a worker ---------------------------------------------------------------------------

def plan_street(root: str, street: str, options: PlanOptions, outdir: str) -> dict:
    """Plan one street on a worker; write its layers; return its partial (see :func:`street_partial`).

    Runs :data:`PLAN_STEPS` on the street's rows plus the service-centre halo (metres: the larger of
    the export's ``halo_m`` and ``options.extra['service_radius_m']``).
    """
    from geodata.parquet import read_street

    started = time.perf_counter()
    radius = (options.extra or {}).get("service_radius_m")
    layers, own_centres = read_street(root, street, halo_m=radius)
    read_counts = {k: len(v) for k, v in layers.items()}
    if "service_centres" in layers:
        read_counts["service_centres"] = len(own_centres)
    street_dir = Path(outdir) / "streets" / street
    ctx = PlanContext(layers=layers, outdir=street_dir, options=options)
    for step in PLAN_STEPS:
        step(ctx)
    _keep_own_centres(ctx, own_centres)
    write_street_layers(ctx.layers_out, Path(outdir) / "layers", street)
    partial = street_partial(ctx, street)
    partial["layers_read"] = read_counts
    partial["seconds"] = round(time.perf_counter() - started, 3)
    return partial


def _keep_own_centres(ctx: PlanContext, own_centres: set[str]) -> None:
    """Service areas of the street's own centres only: each circle is then written once overall."""
    areas = ctx.layers_out.get("service_areas")
    if areas is not None and len(areas):
        ctx.layers_out["service_areas"] = areas[areas["centre_id"].astype(str).isin(own_centres)]


def write_street_layers(layers_out: dict, layers_dir: Path, street: str) -> None:
    """Each result layer as ``layers_dir/<layer>/street=<code>/part-0.parquet`` (WGS84 GeoParquet)."""
    from geodata.parquet import write_partition

    for name, gdf in layers_out.items():
        if name not in MERGED_LAYERS:
            write_partition(gdf, layers_dir / name, street)


def street_partial(ctx: PlanContext, street: str) -> dict:
    """The small, additive result of one street the reduce task needs (no personal data)."""
    households = ctx.layers["households"]
    members = ctx.layers.get("members")
    status = ctx.layers_out.get("grid_status", ctx.layers_out.get("grids"))
    partial = {
        "street": street,
        "grid_rows": pd.DataFrame(status[[c for c in GRID_ROW_COLUMNS if c in status.columns]]),
        "households": len(households),
        "members": len(members) if members is not None else None,
        "outside": int(households["grid_code"].isna().sum()),
        "notes": [f"{street}: {n}" for n in ctx.notes],
        "links": _links_partial(ctx),
        "gaps": _gaps_partial(ctx),
    }
    if "redraw" in ctx.summary:
        partial["redraw"] = ctx.summary["redraw"]
    return partial


def _links_partial(ctx: PlanContext) -> dict | None:
    """Linkage figures of the street with the exact distance sum (metres) for a single rounding later."""
    figures = ctx.summary.get("links")
    if figures is None:
        return None
    links = ctx.layers_out["links"]
    out = dict(figures)
    out["distance_sum_m"] = math.fsum(links["distance_m"].to_numpy(dtype=float))
    return out


def _gaps_partial(ctx: PlanContext) -> dict | None:
    """Coverage counts of the street and its H3 gap cells (``h3``, ``households``) for the global merge."""
    summary = ctx.summary.get("gaps")
    if summary is None:
        return None
    n = len(ctx.layers["households"])
    out = {k: summary.get(k) for k in ("unlinked_by_reason", "households_outside_circle", "gap_basis",
                                       "links_source")}
    # Roads are not exported, so the basis is the straight circle: covered = households − outside.
    outside = summary.get("households_outside_circle")
    out["covered_straight"] = None if outside is None else n - int(outside)
    cells = ctx.layers_out.get("gap_cells")
    out["gap_cells"] = pd.DataFrame(cells[["h3", "households"]]) if cells is not None else None
    return out



# the reduce task --------------------------------------------------------------------------------

def reduce_streets(partials: list[dict], layers_dir: str) -> dict:
    """The plan's summary from every street's partial; writes the merged ``gap_cells`` layer.

    Runs as one task on the cluster; its inputs are small (one row per grid, counts, gap cells).
    """
    partials = sorted(partials, key=lambda p: p["street"])
    status = pd.concat([p["grid_rows"] for p in partials], ignore_index=True)
    n_h = sum(p["households"] for p in partials)
    has_members = any(p["members"] is not None for p in partials)
    n_m = sum(p["members"] or 0 for p in partials)
    # _grid_figures only takes len() of the layers: a RangeIndex stands in for rows we never gather
    summary: dict = {"grids": _grid_figures(status, pd.RangeIndex(n_h), pd.RangeIndex(n_m) if has_members else None,
                                            sum(p["outside"] for p in partials))}
    summary["layers_read"] = _sum_counts([p["layers_read"] for p in partials])
    links = [p["links"] for p in partials if p["links"] is not None]
    if links:
        summary["links"] = reduce_links(links)
    gaps = [p["gaps"] for p in partials if p["gaps"] is not None]
    if gaps:
        summary["gaps"] = reduce_gaps(gaps, status, n_h, Path(layers_dir))
    redraws = {p["street"]: p["redraw"] for p in partials if "redraw" in p}
    if redraws:
        summary["redraw"] = {"by_street": redraws}
    summary["table"] = _table(summary)
    summary["notes"] = [n for p in partials for n in p["notes"]]
    summary["street_seconds"] = {p["street"]: p["seconds"] for p in partials}
    return summary


def _sum_counts(dicts: list[dict]) -> dict:
    """Key-wise sums of count dictionaries (keys in first-seen order)."""
    out: dict = {}
    for d in dicts:
        for k, v in (d or {}).items():
            out[k] = out.get(k, 0) + int(v)
    return out


def reduce_links(parts: list[dict]) -> dict:
    """The linkage figures of the whole run from the streets' (same definitions as the linkage engine)."""
    out: dict = {k: sum(int(p[k]) for p in parts) for k in LINK_SUMS}
    n, linked = out["households"], out["linked"]
    total = math.fsum(p["distance_sum_m"] for p in parts)
    out["linked_pct"] = round(100.0 * linked / n, 2) if n else 100.0
    out["unlinked_by_reason"] = _sum_counts([p["unlinked_by_reason"] for p in parts])
    out["total_distance_m"] = round(total, 1)
    out["mean_distance_m"] = round(total / linked, 1) if linked else 0.0
    if any("links_changed" in p for p in parts):
        out["links_changed"] = sum(int(p.get("links_changed", 0)) for p in parts)
    out["shortage_by_grid"] = {k: v for p in parts for k, v in p["shortage_by_grid"].items()}
    return out


def reduce_gaps(parts: list[dict], status: pd.DataFrame, n_households: int, layers_dir: Path) -> dict:
    """Coverage figures of the whole run; gap cells of all streets merged into gap areas and written."""
    from gridmap.coverage import coverage_summary

    out = coverage_summary(status)
    covered = [p["covered_straight"] for p in parts if p.get("covered_straight") is not None]
    if covered and n_households:
        out["within_straight_pct"] = round(100.0 * sum(covered) / n_households, 2)
    out["unlinked_by_reason"] = _sum_counts([p["unlinked_by_reason"] for p in parts])
    basis = next((p["gap_basis"] for p in parts if p["gap_basis"]), None)
    cells = merge_gap_cells([p["gap_cells"] for p in parts if p["gap_cells"] is not None], basis or "straight")
    target = layers_dir / "gap_cells"
    target.mkdir(parents=True, exist_ok=True)
    cells.to_parquet(target / "part-0.parquet", index=False, write_covering_bbox=True)
    out["gap_cells"] = len(cells)
    out["gap_areas"] = int(cells["gap_id"].nunique()) if len(cells) else 0
    out["gap_basis"] = basis
    outside = [p["households_outside_circle"] for p in parts if p["households_outside_circle"] is not None]
    out["households_outside_circle"] = sum(outside) if outside else None
    out["links_source"] = parts[0]["links_source"]
    return out


def merge_gap_cells(parts: list[pd.DataFrame], basis: str) -> gpd.GeoDataFrame:
    """H3 gap cells of several streets as one layer: counts added per cell, areas renumbered globally.

    Same result as :func:`gridmap.coverage.gap_cells` on all households at once: a cell on a street
    border holds households of both streets, and cells touching across the border form one area.
    Gap areas are numbered by households, largest first; ties by lowest cell index.
    """
    from gridmap.cells import cell_polygon, to_signed, to_unsigned
    from gridmap.coverage import number_gap_areas

    cells = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"h3": [], "households": []})
    if len(cells) == 0:
        return gpd.GeoDataFrame({"h3": np.zeros(0, np.int64), "households": np.zeros(0, int),
                                 "gap_id": np.zeros(0, int), "gap_households": np.zeros(0, int),
                                 "basis": np.zeros(0, object)}, geometry=[], crs="EPSG:4326")
    per_cell = cells.groupby("h3", sort=False)["households"].sum()
    uniq = to_unsigned(per_cell.index.to_numpy())
    order = np.argsort(uniq)
    uniq, counts = uniq[order], per_cell.to_numpy()[order]
    gap_of_cell, gap_households = number_gap_areas(uniq, counts)  # numbered as one machine would
    out = gpd.GeoDataFrame({"h3": to_signed(uniq), "households": counts.astype(int), "gap_id": gap_of_cell,
                            "gap_households": gap_households, "basis": basis},
                           geometry=[cell_polygon(c) for c in uniq], crs="EPSG:4326")
    return out.sort_values(["gap_id", "households"], ascending=[True, False], kind="stable").reset_index(drop=True)


def _table(summary: dict) -> dict:
    """The ``(label, value)`` rows the CLI prints, built as the single run builds them."""
    from api.usecases import gaps as gaps_case
    from api.usecases import links as links_case

    table = {}
    if "links" in summary:
        rows = links_case.summary_rows(SimpleNamespace(summary=summary["links"]))
        table["links"] = [(f"links: {label}", value) for label, value in rows]
    if "gaps" in summary:
        table["gaps"] = [(f"gaps: {label}", value) for label, value in gaps_case.summary_rows(summary["gaps"])]
    return table


# the driver -----------------------------------------------------------------------------------

def connect(cluster: str):
    """A ``distributed.Client`` for ``local:N`` (a LocalCluster of N one-thread processes) or ``tcp://HOST:PORT``.

    Returns ``(client, local_cluster_or_None)``; close both when done.
    """
    from distributed import Client, LocalCluster

    if cluster.startswith("local:"):
        try:
            n = int(cluster.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"--cluster {cluster!r}: give local:N with N ≥ 1 worker processes")
        # no dashboard: other users of the machine may hold port 8787
        local = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(local), local
    if cluster.startswith(("tcp://", "tls://")):
        return Client(cluster), None
    raise ValueError(f"--cluster {cluster!r}: use local:N or tcp://HOST:8786")


def parquet_input(options: PlanOptions, outdir: Path) -> Path:
    """The street-partitioned input: the scenario itself if it is one, else an export into ``OUTDIR/input``."""
    from geodata.parquet import export_parquet, is_parquet_scenario
    from geodata.scenario import load_scenario

    if is_parquet_scenario(options.scenario):
        return Path(options.scenario).resolve()
    root = outdir / "input"
    layers = load_scenario(options.scenario, coords=options.coords)
    export_parquet(layers, root, radius_m=(options.extra or {}).get("service_radius_m"))
    return root.resolve()


def export_scenario(scenario, out, coords: str = "wgs84", radius_m: float | None = None) -> dict:
    """``gridmap export --parquet``: read a scenario (files) and write it partitioned by street; returns the metadata."""
    from geodata.parquet import export_parquet
    from geodata.scenario import load_scenario

    return export_parquet(load_scenario(scenario, coords=coords), out, radius_m=radius_m)


def export_database(database_url: str, out, radius_m: float | None = None, cluster: str | None = None,
                    on_progress: Callable[[int, int, str], None] | None = None) -> dict:
    """``gridmap export --parquet OUT --from-db``: the PostGIS store's planning layers (no personal data) by street.

    With ``cluster`` (``local:N`` or ``tcp://HOST:PORT``) each street is one task reading its own
    partitions (:func:`geodata.parquet_store.export_store_street`), so the export is parallel and no
    process holds more than one street; ``on_progress(done, total, street)`` as each finishes. Without
    it the whole store is read at once (also placing rows that have no street, by location).
    """
    from geodata.parquet_store import export_store
    from geodata.store.session import make_engine

    if cluster is None:
        return export_store(make_engine(database_url), out, radius_m=radius_m)
    return export_database_by_street(database_url, Path(out), cluster, radius_m, on_progress)


def export_database_by_street(database_url: str, out: Path, cluster: str, radius_m: float | None,
                              on_progress: Callable[[int, int, str], None] | None = None) -> dict:
    """The per-street export on ``cluster`` (see :func:`export_database`); returns the metadata written."""
    from distributed import as_completed

    from geodata.parquet import write_meta
    from geodata.parquet_store import export_store_centres, export_store_street, store_streets
    from geodata.store.session import make_engine
    from gridmap.contract import SERVICE_RADIUS_M

    started = time.perf_counter()
    engine = make_engine(database_url)
    streets = store_streets(engine)
    bounds: dict = {}
    counts: dict[str, dict[str, int]] = {}
    seconds: dict[str, float] = {}
    centres, centre_radius = export_store_centres(engine, out, bounds)
    if centres:
        counts["service_centres"] = centres
    client, local = connect(cluster)
    try:
        futures = client.map(export_store_street, [database_url] * len(streets), streets, [str(out)] * len(streets),
                             key=[f"export-street-{s}" for s in streets], retries=1, pure=False)
        for i, fut in enumerate(as_completed(futures), start=1):
            part = fut.result()
            widen_street(bounds, part)
            seconds[part["street"]] = round(part["seconds"], 3)
            for name, rows in part["counts"].items():
                counts.setdefault(name, {})[part["street"]] = rows
            if on_progress:
                on_progress(i, len(streets), part["street"])
    finally:
        client.close()
        if local is not None:
            local.close()
    counts = {name: dict(sorted(per.items())) for name, per in counts.items()}
    halo = max(float(radius_m or SERVICE_RADIUS_M), centre_radius or 0.0)
    meta = write_meta(out, streets, counts, halo, bounds)
    return {**meta, "seconds": round(time.perf_counter() - started, 3), "street_seconds": dict(sorted(seconds.items()))}


def widen_street(bounds: dict, part: dict) -> None:
    """Fold one street task's WGS84 box into ``bounds``."""
    from geodata.parquet import widen_bounds

    if part["bounds"] is not None:
        widen_bounds(bounds, part["street"], part["bounds"])


def run_plan_cluster(options: PlanOptions, cluster: str,
                     on_progress: Callable[[int, int, str], None] | None = None) -> ClusterPlanResult:
    """Plan every street of ``options.scenario`` as one task each on ``cluster``; reduce; write ``summary.json``.

    ``on_progress(done, total, street)`` is called as each street finishes (or fails). A street that
    raises is retried once; if it fails again it is named in ``summary['streets']['failed']`` and the
    other streets' results are kept.
    """
    from distributed import as_completed

    from geodata.parquet import read_meta

    started = time.perf_counter()
    outdir = Path(options.outdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    root = parquet_input(options, outdir)
    streets = read_meta(root)["streets"]
    options = PlanOptions(**{**options.__dict__, "outdir": outdir})
    client, local = connect(cluster)
    try:
        futures = {client.submit(plan_street, str(root), s, options, str(outdir), key=f"plan-street-{s}",
                                 retries=1, pure=False): s for s in streets}
        done, failed = [], {}
        for i, fut in enumerate(as_completed(futures), start=1):
            if fut.status == "error":
                failed[futures[fut]] = f"{type(fut.exception()).__name__}: {fut.exception()}"
            else:
                done.append(fut)
            if on_progress:
                on_progress(i, len(streets), futures[fut])
        summary = client.submit(reduce_streets, done, str(outdir / "layers"), key="plan-reduce",
                                pure=False).result() if done else {}
        workers = len(client.scheduler_info().get("workers", {}))
    finally:
        client.close()
        if local is not None:
            local.close()
    return _finish(summary, options, root, outdir, streets, failed, workers, cluster, started)


def _finish(summary, options, root, outdir, streets, failed, workers, cluster, started) -> ClusterPlanResult:
    """Add the run's facts to the summary and write ``summary.json``."""
    summary["scenario"] = str(options.scenario)
    summary["cluster"] = {"address": cluster, "workers": workers, "input": str(root)}
    summary["streets"] = {"total": len(streets), "done": len(streets) - len(failed), "failed": failed}
    if (options.extra or {}).get("link_allow_cross_grid"):
        summary.setdefault("notes", []).append(
            "links: cross-grid borrowing stays inside each street on a cluster (no borrowing across street borders)")
    summary["seconds"] = {"total": round(time.perf_counter() - started, 3),
                          "streets_sum": round(sum(summary.get("street_seconds", {}).values()), 3)}
    summary["outputs"] = {"layers": str(outdir / "layers"), "streets": str(outdir / "streets")}
    path = outdir / "summary.json"
    path.write_text(json_dumps(summary, indent=True), encoding="utf-8")
    return ClusterPlanResult(summary=summary, summary_path=path, layers_dir=outdir / "layers", failed=failed,
                             notes=summary.get("notes", []))
