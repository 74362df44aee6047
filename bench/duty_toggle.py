"""The first grids tile after a member goes 在岗/离岗, at the schema's head and at 0018, on one database.

    python bench/duty_toggle.py --households 100000 --db gridmap_bench_duty_100k   # build once, kept

Builds (or reuses, ``--db``) a synthetic city with :func:`bench.tiles.open_city`, then, ``--rounds`` times:
switches one member's ``available`` (:func:`geodata.store.incidents.set_available`, what ``POST
/me/available`` does) and times the next ``grids`` tile at zoom 12 and 14 over that member's grid
(:func:`geodata.store.tiles.render_tile` in this process; no HTTP), and a second tile for the steady state.
It does so at head (0019: the toggle marks nothing) and after downgrading to 0018 (every toggle marked
``grid_figures`` and ``h3_counts`` stale, so the first tile rebuilt them), then upgrades again. Prints
p50 / max in ms with the 1-minute load average (figures comparable within one run only).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sqlalchemy import text  # noqa: E402

from geodata.store import migrate  # noqa: E402 - importable only after the sys.path lines above
from geodata.store.session import make_engine  # noqa: E402 - importable only after the sys.path lines above


def first_tiles(url: str, rounds: int) -> dict[str, list[float]]:
    """Milliseconds of the first and the second grids tile (z12, z14) after each of ``rounds`` toggles."""
    from tiles import load, tile_of

    from geodata.store import grid_figures, tiles
    from geodata.store.incidents import set_available

    engine = make_engine(url)
    grid_figures.ensure_fresh(engine)
    with engine.connect() as c:
        member, lon, lat = c.execute(text("SELECT member_id, ST_X(geom), ST_Y(geom) FROM members "
                                          "ORDER BY member_id LIMIT 1")).one()
    out: dict[str, list[float]] = {}
    sizes: dict[int, int] = {}
    for z in (12, 14):
        x, y = tile_of(lon, lat, z)
        for i in range(rounds):
            set_available(engine, member, i % 2 == 1)
            for which in ("first", "second"):
                t0 = time.perf_counter()
                size = sizes[z] = len(tiles.render_tile(engine, "grids", z, x, y))
                if size == 0:
                    raise SystemExit(f"the grids tile z{z} over {member} is empty: nothing measured")
                out.setdefault(f"z{z} {which}", []).append((time.perf_counter() - t0) * 1000)
    set_available(engine, member, True)
    print(f"  (load {load()}; tiles {', '.join(f'z{z} {n / 1000:.1f} kB' for z, n in sizes.items())})")
    return out


def report(label: str, times: dict[str, list[float]]) -> None:
    for key, ms in times.items():
        print(f"{label:<6} {key:<10} p50 {statistics.median(ms):7.1f} ms  max {max(ms):7.1f} ms  (n={len(ms)})")


def main() -> None:
    from tiles import open_city

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--db", help="a named database, kept and reused")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    url, drop = open_city(args)
    try:
        report("0019", first_tiles(url, args.rounds))
        make_engine.cache_clear()
        migrate.downgrade(url, "0018_incident_stats_epoch")
        try:
            report("0018", first_tiles(url, args.rounds))
        finally:
            make_engine.cache_clear()
            migrate.upgrade(url)
    finally:
        if drop:
            from conftest import drop_database

            drop_database(url)


if __name__ == "__main__":
    main()
