"""Benchmark: the plan on one process vs a Dask LocalCluster, streets of ~30k households.

    PYTHONPATH=. python bench/scale.py --households 1000000 --workers 2

1. Inputs, streamed: each street of the synthetic city (``geodata.synth.synth_street``: 15 × 5
   grids of ~400 households ≈ 30k per street) is generated and written as street-partitioned
   GeoParquet by one task on a LocalCluster (``geodata.parquet.write_street``), so no process ever
   holds the whole city. The single-process input (one GeoPackage) is then appended street by
   street from those partitions.
2. The single-process plan (no maps) in a child process, watched: it is stopped when its resident
   memory passes ``--single-cap-mb`` or the machine has less than ``--min-free-mb`` available (the
   machine is shared), and its peak is reported up to where it stopped.
3. The same plan on a fresh LocalCluster (one task per street, ``api.usecases.scale``).

Prints wall and CPU seconds, peak RSS of the single process and of each worker (MB), the per-street
cost (generation, write = the export of one street, plan), ``uptime`` load at start and end, and a
projection to 25M and 500M households on K workers: ``ceil(streets / K) × seconds per street``
(streets are independent tasks; the reduce is one row per grid). Measured and projected figures
are labelled as such; the last line is the whole record as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PER_STREET = 30_000
LAYERS = ("streets", "communities", "grids", "households", "members", "service_centres")
# bench/maps.py would shadow the ``maps`` package in the spawned Dask workers, which inherit sys.path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def _peak_mb() -> float:
    """Peak resident memory of this process since it started, MB (Linux ``VmHWM``).

    Not ``ru_maxrss``: Linux carries that across fork and exec, so a worker or child would report its
    parent's peak (the bench's own, after synthesising the city).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker_usage() -> dict:
    """This worker's peak RSS (MB) and CPU seconds (user + system) since it started."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return {"peak_mb": round(_peak_mb(), 1), "cpu_s": round(use.ru_utime + use.ru_stime, 1)}


def _uptime() -> str:
    """The load averages (1, 5, 15 min) as ``uptime`` prints them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def make_street(layout: dict, index: int, seed: int, root: str) -> dict:
    """One street on a worker: generate (``synth_street``) and write its GeoParquet partitions."""
    from geodata.parquet import write_street
    from geodata.synth import street_code, synth_street

    t = time.perf_counter()
    layers = synth_street(layout, index, seed=seed)
    t_synth = time.perf_counter() - t
    code = street_code(index)
    bounds: dict = {}
    t = time.perf_counter()
    counts = write_street(layers, root, code, bounds)
    return {"street": code, "counts": counts, "bounds": bounds[code], "synth_s": t_synth,
            "write_s": time.perf_counter() - t, "street_row": layers["streets"]}


def make_inputs(n: int, folder: Path, workers: int) -> dict:
    """The city of ``n`` households as street-partitioned GeoParquet, one task per street on a LocalCluster.

    Streets already written under ``folder`` (a kept ``--workdir``: their last layer, communities,
    exists) are taken as they are, so an interrupted run resumes; only new streets are timed.
    """
    from distributed import Client, LocalCluster, as_completed

    from geodata.parquet import write_meta
    from geodata.synth import street_code, street_layout

    layout, root = street_layout(n, PER_STREET), folder / "parquet"
    todo = [i for i in range(layout["streets"]) if not (root / "communities" / f"street={street_code(i)}").is_dir()]
    t = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        futures = [client.submit(make_street, layout, i, 1, str(root), pure=False) for i in todo]
        made = [f.result() for f in as_completed(futures)]
        kept = client.gather(client.map(street_files, [str(root)] * (layout["streets"] - len(todo)),
                                        [street_code(i) for i in range(layout["streets"]) if i not in set(todo)]))
        usage = client.run(_worker_usage)
    done = sorted(made + kept, key=lambda d: d["street"])
    counts: dict = {}
    for d in done:
        for name, rows in d["counts"].items():
            counts.setdefault(name, {})[d["street"]] = rows
    write_meta(root, [d["street"] for d in done], counts, 1000.0, {d["street"]: d["bounds"] for d in done})
    timed = made or [{"synth_s": float("nan"), "write_s": float("nan")}]
    return {"root": root, "street_rows": [d["street_row"] for d in done], "seconds": time.perf_counter() - t,
            "streets": len(done), "generated": len(made), "workers": sorted(usage.values(), key=lambda u: u["peak_mb"]),
            "synth_s_mean": sum(d["synth_s"] for d in timed) / len(timed),
            "write_s_mean": sum(d["write_s"] for d in timed) / len(timed)}


def street_files(root: str, code: str) -> dict:
    """Counts, bounds and the street row of a street written by an earlier (interrupted) run."""
    import geopandas as gpd

    from geodata.parquet import STREET_LAYERS, read_layer_street, widen_bounds

    counts, bounds = {}, {}
    for name in STREET_LAYERS:
        part = read_layer_street(root, name, code)
        if part is not None and len(part):
            counts[name] = len(part)
            widen_bounds(bounds, code, part.total_bounds)
    comms = read_layer_street(root, "communities", code)
    row = gpd.GeoDataFrame({"code": [code], "name": [f"街道{code[-3:]}"]}, geometry=[comms.union_all()],
                           crs="EPSG:4326")
    return {"street": code, "counts": counts, "bounds": bounds[code], "street_row": row}


def write_gpkg(root: Path, streets: list[str], street_rows: list, gpkg: Path) -> float:
    """One GeoPackage of the whole city, appended one street at a time from the partitions (bounded memory)."""
    import pandas as pd
    import pyogrio

    from geodata.parquet import read_layer_street

    t = time.perf_counter()
    pyogrio.write_dataframe(pd.concat(street_rows, ignore_index=True), gpkg, layer="streets")
    for code in streets:
        for name in LAYERS[1:]:
            part = read_layer_street(root, name, code)
            if part is not None and len(part):
                pyogrio.write_dataframe(part.drop(columns=["bbox"], errors="ignore"), gpkg, layer=name,
                                        append=gpkg.exists() and name in _written(gpkg))
    return time.perf_counter() - t


def _written(gpkg: Path) -> set[str]:
    import pyogrio

    return {n for n, _ in pyogrio.list_layers(gpkg)}


SINGLE = """import json, resource, sys, time
from pathlib import Path
from api.usecases.plan import PlanOptions, run_plan
t = time.perf_counter()
step = lambda name: print(f"step {name} {time.perf_counter() - t:.1f}", flush=True)
r = run_plan(PlanOptions(scenario=Path(sys.argv[1]), outdir=Path(sys.argv[2]), maps=False), on_step=step)
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - t, "cpu_s": use.ru_utime + use.ru_stime,
                  "linked": r.summary["links"]["linked"], "steps": r.summary["seconds"]}), flush=True)
"""


#: The same plan on the street-partitioned GeoParquet read whole (no GeoPackage to write first at 10M).
SINGLE_PARQUET = """import json, resource, sys, time
from pathlib import Path
from api.usecases.plan import PLAN_STEPS, PlanContext, PlanOptions, _write_outputs, step_name
from geodata.parquet import read_scenario
t = time.perf_counter()
print("step read 0.0", flush=True)
layers = read_scenario(sys.argv[1])
out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
ctx = PlanContext(layers=layers, outdir=out, options=PlanOptions(scenario=Path(sys.argv[1]), outdir=out, maps=False))
for step in PLAN_STEPS:
    print(f"step {step_name(step)} {time.perf_counter() - t:.1f}", flush=True)
    step(ctx)
print(f"step write {time.perf_counter() - t:.1f}", flush=True)
_write_outputs(ctx)
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - t, "cpu_s": use.ru_utime + use.ru_stime,
                  "linked": ctx.summary["links"]["linked"], "steps": {}}), flush=True)
"""


def _proc_mb(pid: int) -> tuple[float, float, float]:
    """``(VmRSS, VmHWM)`` of ``pid`` in MB and its CPU seconds so far (user + system)."""
    status = {ln.split(":")[0]: ln.split()[1] for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
              if ln.startswith(("VmRSS", "VmHWM"))}
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return int(status.get("VmRSS", 0)) / 1024, int(status.get("VmHWM", 0)) / 1024, cpu


def _epoch(hhmm: str | None) -> float:
    """Epoch seconds of today's UTC ``HH:MM`` (infinity without one)."""
    if not hhmm:
        return float("inf")
    h, m = (int(x) for x in hhmm.split(":"))
    now = time.gmtime()
    return time.mktime((now.tm_year, now.tm_mon, now.tm_mday, h, m, 0, 0, 0, 0)) - time.timezone


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def run_single(gpkg: Path, out: Path, cap_mb: float, min_free_mb: float, until: float, code: str = SINGLE) -> dict:
    """The single-process plan in a watched child; stopped (and said so) past ``cap_mb``, below ``min_free_mb``
    or at the epoch second ``until`` (the machine is shared and the session has an end)."""
    log = out.with_suffix(".log")
    t = time.perf_counter()
    with log.open("w") as fh:
        child = subprocess.Popen([sys.executable, "-c", code, str(gpkg), str(out)], stdout=fh,
                                 stderr=subprocess.STDOUT, text=True)
        peak, cpu, stopped = 0.0, 0.0, None
        while child.poll() is None:
            try:
                rss, hwm, cpu = _proc_mb(child.pid)
            except (FileNotFoundError, ProcessLookupError, IndexError):
                break
            peak = max(peak, hwm)
            if rss > cap_mb or _available_mb() < min_free_mb or time.time() > until:
                stopped = (f"stopped after {time.perf_counter() - t:.0f} s at RSS {rss:.0f} MB, machine available "
                           f"{_available_mb():.0f} MB" + (" (time limit)" if time.time() > until else ""))
                child.send_signal(signal.SIGKILL)
                child.wait()
                break
            time.sleep(0.5)
    lines = log.read_text().splitlines()
    steps = [ln for ln in lines if ln.startswith("step ")]
    if stopped or child.returncode != 0:
        return {"seconds": time.perf_counter() - t, "peak_mb": peak, "cpu_s": cpu, "linked": None,
                "stopped": stopped or f"exit {child.returncode}: {lines[-1] if lines else ''}",
                "last_step": steps[-1] if steps else None}
    record = json.loads(lines[-1])
    return {**record, "peak_mb": peak, "stopped": None, "last_step": steps[-1]}


class _Deadline(Exception):
    """The cluster plan ran out of the bench's time: the streets done so far are reported."""


def run_cluster(root: Path, out: Path, workers: int, until: float) -> dict:
    """The plan on a fresh LocalCluster of ``workers`` processes; peak memory and CPU read from each worker.

    Stopped at the epoch second ``until``: then the figures are of the streets finished by then
    (per-street wall = elapsed × workers / streets done).
    """
    from distributed import Client, LocalCluster

    from api.usecases.plan import PlanOptions
    from api.usecases.scale import run_plan_cluster

    finished: list[str] = []

    def progress(done: int, total: int, street: str) -> None:
        finished.append(street)
        if done % 25 == 0:
            print(f"  plan: {done}/{total} streets {time.strftime('%H:%M:%S')} load {_uptime()}", flush=True)
        if time.time() > until and done < total:
            raise _Deadline

    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster:
        t = time.perf_counter()
        try:
            result = run_plan_cluster(PlanOptions(scenario=root, outdir=out, maps=False), cluster.scheduler_address,
                                      on_progress=progress)
        except _Deadline:
            result = None
        seconds = time.perf_counter() - t
        with Client(cluster) as client:
            usage = client.run(_worker_usage)
    record = {"seconds": seconds, "workers": sorted(usage.values(), key=lambda u: u["peak_mb"]), "streets": len(finished)}
    if result is None:
        mean = seconds * workers / max(1, len(finished))
        return {**record, "stopped": f"time limit: {len(finished)} streets done", "street_seconds_mean": mean,
                "street_seconds_max": float("nan"), "linked": None, "failed": {}}
    per_street = result.summary["street_seconds"]
    return {**record, "stopped": None, "street_seconds_mean": sum(per_street.values()) / len(per_street),
            "street_seconds_max": max(per_street.values()), "linked": result.summary["links"]["linked"],
            "failed": result.failed}


def _multi(gdf):
    """Polygons as one-part MultiPolygons, the store's column type (``read_layer`` does the same)."""
    import shapely

    if len(gdf) and "Polygon" in gdf.geometry.iloc[0].geom_type:
        gdf = gdf.copy()
        gdf.geometry.values[:] = [shapely.MultiPolygon([g]) if g.geom_type == "Polygon" else g for g in gdf.geometry.values]
    return gdf


def store_export(streets: int, workers: int) -> dict:
    """Per-street export cost from PostGIS: ``streets`` synthetic streets imported into a fresh database,
    exported whole (one process) and street by street on a LocalCluster (``export --from-db --cluster``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import create_database, drop_database

    from api.usecases.scale import export_database
    from geodata.parquet_store import export_store
    from geodata.store import migrate
    from geodata.store.importer import import_layer
    from geodata.store.session import make_engine
    from geodata.synth import street_layout, synth_street

    url = create_database("gridmap_bench_scale")
    try:
        migrate.upgrade(url)
        layout = street_layout(streets * PER_STREET, PER_STREET)
        t = time.perf_counter()
        for i in range(streets):
            city = synth_street(layout, i, seed=1)
            for name in LAYERS:
                import_layer(make_engine(url), name, _multi(city[name]))
        load_s = time.perf_counter() - t
        with tempfile.TemporaryDirectory(prefix="gridmap-scale-export-") as tmp:
            t = time.perf_counter()
            export_store(make_engine(url), Path(tmp) / "whole")
            whole_s = time.perf_counter() - t
            by = export_database(url, Path(tmp) / "streets", cluster=f"local:{workers}")
    finally:
        drop_database(url)
    per = list(by["street_seconds"].values())
    return {"streets": streets, "import_s": load_s, "whole_s": whole_s, "by_street_s": by["seconds"],
            "street_export_s_mean": sum(per) / len(per)}


def projection(street_s: float, households: int, workers: int) -> float:
    """Projected wall seconds: streets of 30k spread over ``workers`` (independent tasks, no shared state)."""
    streets = -(-households // PER_STREET)
    return -(-streets // workers) * street_s


def _workers_text(workers: list[dict]) -> str:
    return ", ".join(f"{w['peak_mb']:.0f} MB / {w['cpu_s']:.0f} cpu-s" for w in workers)


def report(n: int, k: int, inputs: dict, single: dict | None, cluster: dict) -> dict:
    """Print the figures and the projection; returns them as one record."""
    print(f"inputs (streamed, LocalCluster({k})): {inputs['streets']} streets ({inputs['generated']} made now) in "
          f"{inputs['seconds']:.1f} s; per street "
          f"{inputs['synth_s_mean']:.2f} s generate + {inputs['write_s_mean']:.2f} s write (export); workers "
          f"{_workers_text(inputs['workers'])}")
    if single is not None:
        tail = f" — {single['stopped']} (last: {single['last_step']})" if single["stopped"] else ""
        print(f"single process (input GeoPackage appended in {single['gpkg_s']:.1f} s): "
              f"{single['seconds']:.1f} s wall, {single['cpu_s']:.1f} cpu-s, "
              f"peak {single['peak_mb']:.0f} MB{tail}")
    stop = f" — stopped, {cluster['stopped']}" if cluster["stopped"] else ""
    print(f"LocalCluster({k}){stop}: {cluster['seconds']:.1f} s wall; workers {_workers_text(cluster['workers'])}; "
          f"{cluster['streets']} streets, plan {cluster['street_seconds_mean']:.2f} s per street "
          f"(max {cluster['street_seconds_max']:.2f})")
    street_s = cluster["street_seconds_mean"] + inputs["write_s_mean"]
    cpu_s = sum(w["cpu_s"] for w in cluster["workers"]) / cluster["streets"]
    cpu_s += sum(w["cpu_s"] for w in inputs["workers"]) / max(1, inputs["generated"]) * inputs["write_s_mean"] / (
        inputs["write_s_mean"] + inputs["synth_s_mean"])
    print(f"per street: {street_s:.2f} s wall (plan + export write, under this load), {cpu_s:.2f} cpu-s "
          "(workers' CPU / streets, incl. the write's share of the input tasks)")
    print("projection (per-street cost × ceil(streets / K); not measured):  wall-based | cpu-based (a free core each)")
    for total in (25_000_000, 500_000_000):
        for workers in (8, 32, 128, 512):
            print(f"  {total:>11,} households, K={workers:>3}: {projection(street_s, total, workers) / 60:8.1f} min | "
                  f"{projection(cpu_s, total, workers) / 60:8.1f} min")
    return {"households": n, "workers": k, "inputs": {k_: v for k_, v in inputs.items()
                                                       if k_ not in ("root", "street_rows")},
            "single": single, "cluster": cluster, "street_cost_s": street_s, "street_cpu_s": cpu_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--single-cap-mb", type=float, default=15_000, help="stop the single process past this RSS")
    parser.add_argument("--min-free-mb", type=float, default=2_000, help="stop it when the machine has less left")
    parser.add_argument("--skip-single", action="store_true")
    parser.add_argument("--single-until", default=None, help="UTC HH:MM at which to stop the single process")
    parser.add_argument("--until", default=None, help="UTC HH:MM at which to stop the cluster plan")
    parser.add_argument("--store-export", type=int, default=0, metavar="STREETS",
                        help="only measure the export from PostGIS: this many streets imported, exported both ways")
    parser.add_argument("--single-parquet", action="store_true",
                        help="only the single process, on --workdir's GeoParquet read whole (after a run with --workdir)")
    parser.add_argument("--workdir", default=None, help="keep inputs here (an interrupted generation resumes)")
    parser.add_argument("--tmp", default=None, help="folder for the inputs and outputs (default: system temp)")
    args = parser.parse_args()
    print(f"start {time.strftime('%H:%M:%S')} load {_uptime()}", flush=True)
    if args.single_parquet:
        root = Path(args.workdir) / "parquet"
        single = run_single(root, Path(args.workdir) / "single-parquet", args.single_cap_mb, args.min_free_mb,
                            _epoch(args.single_until), SINGLE_PARQUET)
        tail = f" — {single['stopped']} (last: {single['last_step']})" if single["stopped"] else ""
        print(f"single process on the GeoParquet read whole: {single['seconds']:.1f} s wall, {single['cpu_s']:.1f} "
              f"cpu-s, peak {single['peak_mb']:.0f} MB{tail}\nend {time.strftime('%H:%M:%S')} load {_uptime()}\n"
              f"{json.dumps(single)}", flush=True)
        return
    if args.store_export:
        record = store_export(args.store_export, args.workers)
        print(f"export from PostGIS, {args.store_export} streets of {PER_STREET:,}: whole store {record['whole_s']:.1f} s; "
              f"street by street on LocalCluster({args.workers}) {record['by_street_s']:.1f} s, "
              f"{record['street_export_s_mean']:.2f} s per street task (import took {record['import_s']:.1f} s)")
        print(f"end {time.strftime('%H:%M:%S')} load {_uptime()}\n{json.dumps(record)}", flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="gridmap-scale-", dir=args.tmp) as tmp:
        folder = Path(args.workdir or tmp)
        inputs = make_inputs(args.households, folder, args.workers)
        print(f"inputs done {time.strftime('%H:%M:%S')} load {_uptime()}", flush=True)
        cluster = run_cluster(inputs["root"], folder / "cluster", args.workers, _epoch(args.until))
        print(f"cluster done {time.strftime('%H:%M:%S')} load {_uptime()}", flush=True)
        single = None
        if not args.skip_single:
            gpkg = folder / "city.gpkg"
            gpkg_s = write_gpkg(inputs["root"], [r["code"].iloc[0] for r in inputs["street_rows"]],
                                inputs["street_rows"], gpkg)
            single = {**run_single(gpkg, folder / "single", args.single_cap_mb, args.min_free_mb,
                                   _epoch(args.single_until)), "gpkg_s": gpkg_s}
        print(f"end {time.strftime('%H:%M:%S')} load {_uptime()}", flush=True)
        record = report(args.households, args.workers, inputs, single, cluster)
        if single is not None and single["linked"] is not None and cluster["linked"] is not None:
            assert cluster["linked"] == single["linked"] and not cluster["failed"]
        print(json.dumps(record, default=str))


if __name__ == "__main__":
    main()
