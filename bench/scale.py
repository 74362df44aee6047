"""Benchmark: the plan on one process vs a Dask LocalCluster, streets of ~30k households.

    PYTHONPATH=. python bench/scale.py --households 1000000 --workers 2

Synthesises a city (``geodata.synth.synth_city``: 400 households per grid, 75 grids ≈ 30k households
per street), writes it once as a GeoPackage (single-process input) and once as street-partitioned
GeoParquet (cluster input), then runs the plan without maps both ways. Prints wall time, peak RSS of
the single process and of each worker (MB), the per-street cost, and a projection to 25M and 500M
households on K workers: ``streets / K × seconds per street`` (streets are independent tasks; the
reduce is one row per grid). Measured and projected figures are labelled as such.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PER_STREET = 30_000
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


def make_inputs(n: int, folder: Path) -> tuple[Path, Path]:
    """Synthetic city of ``n`` households as ``city.gpkg`` and as GeoParquet by street."""
    from geodata.io import write_layer
    from geodata.parquet import export_parquet
    from geodata.synth import synth_city

    # 5 × 5 communities of 3 × 5 grids × 400 households ≈ 30k households per street
    city = synth_city(n, seed=1, grids_per_community=(3, 5), communities_per_street=(5, 1))
    gpkg = folder / "city.gpkg"
    for name in ("streets", "communities", "grids", "households", "members", "service_centres"):
        write_layer(city[name], gpkg, layer=name)
    export_parquet({k: city[k] for k in ("streets", "communities", "grids", "households", "members",
                                         "service_centres")}, folder / "parquet")
    return gpkg, folder / "parquet"


def run_single(gpkg: Path, out: Path) -> dict:
    """The single-process plan in a child process (so its peak memory is its own)."""
    code = ("import json,time;from pathlib import Path;from api.usecases.plan import PlanOptions,run_plan;"
            f"t=time.perf_counter();r=run_plan(PlanOptions(scenario=Path({str(gpkg)!r}),outdir=Path({str(out)!r}),"
            "maps=False));hwm=[l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM')];"
            "print(json.dumps({'seconds':time.perf_counter()-t,"
            "'peak_mb':int(hwm[0].split()[1])/1024,'linked':r.summary['links']['linked']}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cluster(root: Path, out: Path, workers: int) -> dict:
    """The plan on a LocalCluster of ``workers`` processes; peak memory read from each worker."""
    from distributed import Client, LocalCluster

    from api.usecases.plan import PlanOptions
    from api.usecases.scale import run_plan_cluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster:
        t = time.perf_counter()
        result = run_plan_cluster(PlanOptions(scenario=root, outdir=out, maps=False), cluster.scheduler_address)
        seconds = time.perf_counter() - t
        with Client(cluster) as client:
            peaks = client.run(_peak_mb)
    per_street = result.summary["street_seconds"]
    return {"seconds": seconds, "worker_peak_mb": sorted(peaks.values()), "streets": len(per_street),
            "street_seconds_mean": sum(per_street.values()) / len(per_street),
            "street_seconds_max": max(per_street.values()), "linked": result.summary["links"]["linked"],
            "failed": result.failed}


def projection(street_s: float, households: int, workers: int) -> float:
    """Projected wall seconds: streets of 30k spread over ``workers`` (independent tasks, no shared state)."""
    streets = -(-households // PER_STREET)
    return -(-streets // workers) * street_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gridmap-scale-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        gpkg, root = make_inputs(args.households, folder)
        print(f"inputs: {args.households:,} households in {time.perf_counter() - t:.1f} s")
        single = run_single(gpkg, folder / "single")
        print(f"single process: {single['seconds']:.1f} s, peak {single['peak_mb']:.0f} MB")
        cluster = run_cluster(root, folder / "cluster", args.workers)
        print(f"LocalCluster({args.workers}): {cluster['seconds']:.1f} s, worker peaks "
              f"{', '.join(f'{m:.0f}' for m in cluster['worker_peak_mb'])} MB; {cluster['streets']} streets, "
              f"{cluster['street_seconds_mean']:.2f} s per street (max {cluster['street_seconds_max']:.2f})")
        assert cluster["linked"] == single["linked"] and not cluster["failed"]
        print("projection (measured per-street cost × streets / K; not measured):")
        for n in (25_000_000, 500_000_000):
            for k in (8, 32, 128, 512):
                print(f"  {n:>11,} households, K={k:>3}: {projection(cluster['street_seconds_mean'], n, k) / 60:8.1f} min")


if __name__ == "__main__":
    main()
