"""Gaps tiles: the cached counts (:mod:`geodata.store.gap_tiles`) against the live count of every household.

    python bench/gap_tiles.py --households 200000
    python bench/gap_tiles.py --households 1000000 --db gridmap_bench_gaps_1m   # build once, kept

Builds a synthetic city (``geodata.synth.synth_city``: 400 households per 300 m grid, a service centre per
six grids, 1,000 m circles) in a fresh PostGIS database (or in ``--db``, kept and reused), links every
household of a third of the grids, half of the households of another third and none of the rest (one
current run), then draws gaps tiles at random households for zooms 12–15 both ways, in one process, one at
a time: ``render_tile`` as served, and the live statement (``tiles._gap_cells_sql``) on the same tile.
Prints p50 / p95 (ms) per zoom for an every-region caller with personal-data rights (tiles at random
households) and for one street's caller without them (tiles at that street's households), and checks that
both ways give the same figures for every cell both drew. The machine's 1-minute load average is printed
beside every row: figures are comparable only within one run. A live statement is cancelled after
``--live-timeout`` seconds (default :data:`LIVE_TIMEOUT_S`; its plan can go wrong: a subquery per
household scanning every link) and counted as that long.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sqlalchemy import text  # noqa: E402
from tiles import open_city, tile_of  # noqa: E402 - bench/tiles.py, importable after the lines above

from geodata.store.session import make_engine  # noqa: E402

ZOOMS = range(12, 16)
#: A live statement still running after this many seconds is cancelled and counted as this long
#: (``--live-timeout``).
LIVE_TIMEOUT_S = 60
LINK_SQL = """
WITH g AS (SELECT grid_code, row_number() OVER (ORDER BY grid_code) % 3 AS third FROM grids)
INSERT INTO links (run_id, household_id, member_id)
SELECT :run, h.household_id, 'M-BENCH' FROM households h JOIN g USING (grid_code)
WHERE g.third = 0 OR (g.third = 1 AND hashtext(h.household_id) % 2 = 0)"""


def link_some(engine) -> None:
    """A third of the grids wholly linked, a third half linked, a third not (once per database)."""
    with engine.begin() as c:
        if c.execute(text("SELECT 1 FROM link_runs WHERE region = 'BENCH-GAPS'")).scalar():
            return
        run = c.execute(text("INSERT INTO link_runs (region, is_current) VALUES ('BENCH-GAPS', true) "
                             "RETURNING run_id")).scalar_one()
        c.execute(text(LINK_SQL), {"run": run})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM ANALYZE links"))


def live_rows(engine, z, x, y, codes, pii, scope, timeout_s: float = LIVE_TIMEOUT_S) -> tuple[float, dict]:  # noqa: PLR0913
    """The live statement on tile z/x/y: (seconds, {cell: (households, unlinked, outside)})."""
    from geodata.store import tiles

    params = {"z": z, "x": x, "y": y, "margin": tiles.BUFFER / tiles.EXTENT, "codes": codes, "res": tiles.cell_res(z),
              "k": tiles.K_ANONYMITY, "radius_m": 1000.0, "comms": sorted(scope.communities or ()),
              "streets": sorted(scope.streets or ())}
    from sqlalchemy.exc import OperationalError

    t0 = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if codes is not None:
            params["streets_of"] = tiles.region_streets(conn, codes, params["comms"], params["streets"])
        conn.execute(text(f"SET statement_timeout = {int(timeout_s * 1000)}"))
        try:
            rows = conn.execute(text(f"SELECT q.*, {tiles._SERIAL} FROM ({tiles._gap_cells_sql(codes, pii)}) q"),
                                params).all()
        except OperationalError:  # cancelled at the timeout: counted as the timeout, compared with nothing
            return float(timeout_s), {}
        finally:
            conn.execute(text("RESET statement_timeout"))
    return time.perf_counter() - t0, {int(r[0]): tuple(int(v) for v in r[1:4]) for r in rows}


def cached_rows(engine, z, x, y, scope, pii) -> tuple[float, dict]:
    """``render_tile`` as served (decoded): (seconds, {cell: (households, unlinked, outside)})."""
    import h3
    import mapbox_vector_tile

    from geodata.store.tiles import render_tile

    every = scope.everything
    t0 = time.perf_counter()
    body = render_tile(engine, "gaps", z, x, y, grid_codes=None if every else scope.grids,
                       community_codes=None if every else scope.communities,
                       street_codes=None if every else scope.streets, pii=pii)
    took = time.perf_counter() - t0
    feats = mapbox_vector_tile.decode(body).get("gaps", {}).get("features", []) if body else []
    return took, {h3.str_to_int(f["properties"]["cell"]): tuple(f["properties"].get(k) for k in
                                                                 ("households", "unlinked", "outside")) for f in feats}


def positions(engine, street: str | None) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 lon/lat (degrees) of the households (of one street), in id order."""
    where = "" if street is None else " WHERE street_code = :s"
    with engine.connect() as c:
        xy = np.array(c.execute(text(f"SELECT ST_X(geom), ST_Y(geom) FROM households{where} ORDER BY household_id"),
                                {"s": street}).all())
    return xy[:, 0], xy[:, 1]


def measure(engine, callers, per_zoom: int, seed: int, timeout_s: float) -> None:
    """Tiles at random households of each caller's region (every household for every region)."""
    rng = np.random.default_rng(seed)
    print(f"{'caller':<36}{'z':>3} | {'cached p50':>10} {'p95':>7} | {'live p50':>9} {'p95':>7} | cells | load")
    for name, street, scope, pii in callers:
        lon, lat = positions(engine, street)
        codes = None if scope.everything else sorted(scope.grids)
        for z in ZOOMS:
            ours, live, cells = [], [], 0
            for i in rng.integers(0, len(lon), per_zoom):
                x, y = tile_of(lon[i], lat[i], z)
                t_ours, got = cached_rows(engine, z, x, y, scope, pii)
                t_live, want = live_rows(engine, z, x, y, codes, pii, scope, timeout_s)
                for cell in set(got) & set(want):
                    shown = tuple(v if pii or v >= 5 or v == 0 else None for v in want[cell])
                    assert got[cell] == shown, (name, z, x, y, cell, got[cell], want[cell])
                ours.append(t_ours)
                live.append(t_live)
                cells += len(got)
            print(f"{name:<36}{z:>3} | {_ms(ours, 50):>10} {_ms(ours, 95):>7} | {_ms(live, 50):>9} {_ms(live, 95):>7} | "
                  f"{cells // per_zoom:>5} | {os.getloadavg()[0]:.2f}")


def _ms(samples, q) -> str:
    return f"{np.percentile(np.array(samples) * 1000, q):.0f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--households", type=int, default=200_000)
    p.add_argument("--per-zoom", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--db", help="build the city into this database once and keep it; later runs reuse it")
    p.add_argument("--live-timeout", type=float, default=LIVE_TIMEOUT_S, help="seconds a live statement may run")
    p.add_argument("--street-only", action="store_true", help="measure only the one street's caller")
    args = p.parse_args()
    url, drop = open_city(args)
    try:
        from geodata.store import auth as auth_store
        from geodata.store import grid_figures

        engine = make_engine(url)
        link_some(engine)
        grid_figures.ensure_fresh(engine)
        with engine.connect() as c:
            street = c.execute(text("SELECT code FROM streets ORDER BY code LIMIT 1")).scalar_one()
        callers = [("every region, personal data", None, auth_store.expand_regions(engine, ["*"]), True),
                   (f"street {street}, no personal data", street, auth_store.expand_regions(engine, [street]), False)]
        if args.street_only:
            callers = callers[1:]
        measure(engine, callers, args.per_zoom, args.seed, args.live_timeout)
    finally:
        if drop:
            from conftest import drop_database

            drop_database(url)


if __name__ == "__main__":
    main()
