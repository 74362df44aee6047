"""Leader map layers and weekly reports benchmark: the heat, centres and proposed-sites layers of one
street and one weekly report run, against the anchor of the same street's page figures
(:func:`api.usecases.leader.leader_view`), in one process on a synthetic city in a fresh PostGIS database.

    python bench/leader_layers.py --households 100000 --incidents 20000

The city and incidents are those of ``bench/leader.py``. Figures are seconds (best of ``--repeat``) and
their ratio to the anchor; ``uptime``'s load is printed beside them (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from leader import create_database, drop_database, load, make_engine, migrate  # noqa: E402


def best(fn, repeat: int) -> tuple[float, object]:
    """Best wall-clock seconds of ``repeat`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def run(args) -> None:
    from api.usecases.leader import leader_view
    from api.usecases.leader_layers import incident_heat, proposed_sites, service_centres
    from api.usecases.audit import SYSTEM, job_detail
    from api.usecases.weekly_reports import _reader, write_weekly_reports

    url = create_database("gridmap_bench_layers")
    try:
        migrate.upgrade(url)
        street = load(url, args.households, args.incidents, args.seed)
        engine = make_engine(url)
        who = _reader(engine)
        anchor, _ = best(lambda: leader_view(engine, who, street, at=datetime.now(UTC)), args.repeat)
        print(f"load {os.getloadavg()[0]:.1f}  anchor leader_view({street}): {anchor:.2f} s")
        cases = {"heat (all time)": lambda: incident_heat(engine, street, start=None, end=None, category=None),
                 "centres + circles": lambda: service_centres(engine, street),
                 "proposed sites (k=3)": lambda: proposed_sites(engine, street)}
        for name, fn in cases.items():
            seconds, body = best(fn, args.repeat)
            extra = f", {body.get('uncovered', '')} uncovered, {body.get('method', '')}" if "sites" in name else ""
            print(f"load {os.getloadavg()[0]:.1f}  {name}: {seconds:.2f} s = {seconds / anchor:.2f} × anchor "
                  f"({len(body['features'])} features{extra})")
        with tempfile.TemporaryDirectory() as folder:
            t = time.perf_counter()
            result = write_weekly_reports(engine, Path(folder), audit=(SYSTEM, job_detail(None, "bench")))
            seconds = time.perf_counter() - t
            print(f"load {os.getloadavg()[0]:.1f}  weekly reports: {len(result.written)} streets in {seconds:.1f} s "
                  f"= {seconds / max(1, len(result.written)) / anchor:.2f} × anchor per street")
            t = time.perf_counter()
            again = write_weekly_reports(engine, Path(folder), audit=(SYSTEM, job_detail(None, "bench")))
            print(f"load {os.getloadavg()[0]:.1f}  second run (idempotent): {len(again.skipped)} skipped in "
                  f"{time.perf_counter() - t:.2f} s")
    finally:
        drop_database(url)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--households", type=int, default=100_000)
    p.add_argument("--incidents", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    run(p.parse_args())


if __name__ == "__main__":
    main()
