"""Vector tile benchmark: gridmap's ``/tiles/{layer}/{z}/{x}/{y}.mvt`` against tipg, the maintained OGC
Features + Tiles server for PostGIS, serving the same tables of one database, in one run.

    python bench/tiles.py --households 200000 --per-zoom 20
    python bench/tiles.py --households 1000000 --db gridmap_bench_tiles_1m   # build once, kept
    python bench/tiles.py --households 1000000 --db gridmap_bench_tiles_1m   # later runs reuse it

Builds a synthetic city (``geodata.synth.synth_city``) in a fresh PostGIS database (or, with ``--db``, in
that named database, which is kept and reused by later runs while it holds that many households; the
tile positions are then read back from it), starts both servers
as subprocesses (tipg from its own virtualenv, ``--tipg-venv``, default /work/tipg-venv, so it does not
disturb the project's), requests the same tiles from both over HTTP, one at a time, and prints p50 / p95
time (ms) and the largest tile (kB) for zooms 12–17 side by side, with the ratios gridmap / tipg, and the
1-minute load average of the machine beside every row (the figures are only comparable within one run).
Tiles are drawn at random under households, so none is
empty. tipg serves the tables as they are (households as points at every zoom, capped by its
``TIPG_MAX_FEATURES_PER_TILE``); gridmap sends H3 aggregates below zoom 16. Goal (issue 13): ≤ tipg's
time and ≤ 500 kB per tile. The caller is an admin token (every region, points from zoom 16). The
rebuild of ``grid_figures`` and ``h3_counts`` after a write (what the first grids / households tile
after it pays) is timed and printed separately; no finished tile is cached by either server.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import sqlalchemy as sa  # noqa: E402 - kept with the project imports below
from conftest import ADMIN_URL, _with_db, create_database, drop_database  # noqa: E402 - importable only after the sys.path lines above
from sqlalchemy import text  # noqa: E402

from geodata.store import migrate  # noqa: E402 - importable only after the sys.path lines above
from geodata.store.importer import import_layer  # noqa: E402 - importable only after the sys.path lines above
from geodata.store.session import make_engine  # noqa: E402 - importable only after the sys.path lines above

ZOOMS = range(12, 18)
#: Our layer → tipg collection and the properties tipg is asked to send (the same kind of content).
LAYERS = {"grids": ("public.grids", "grid_code,name,community_code"),
          "households": ("public.households", "household_id,grid_code,size")}


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """XYZ tile holding a WGS84 point (degrees)."""
    n = 2 ** z
    return int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)


def load_city(url: str, households: int, seed: int) -> None:
    """Synthesise the city and import it into the (migrated, empty) database at ``url``."""
    from geodata.io import normalise
    from geodata.synth import synth_city

    t0 = time.perf_counter()
    city = synth_city(households, seed=seed, households_per_grid=400)
    engine = make_engine(url)
    for layer in ("streets", "communities", "grids", "households", "members", "service_centres"):
        import_layer(engine, layer, normalise(city[layer], layer))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM ANALYZE"))  # both servers then plan on current statistics
    print(f"city: {len(city['households']):,} households, {len(city['grids']):,} grids, "
          f"built in {time.perf_counter() - t0:.0f} s")


def open_city(args) -> tuple[str, bool]:
    """The database URL holding the city, built now unless ``--db`` names one that already holds it;
    returns (url, whether to drop it afterwards)."""
    if not args.db:
        url = create_database("gridmap_bench_tiles")
        migrate.upgrade(url)
        load_city(url, args.households, args.seed)
        return url, True
    url = _with_db(ADMIN_URL, args.db)
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        if not c.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": args.db}).scalar():
            c.execute(text(f'CREATE DATABASE "{args.db}"'))
    admin.dispose()
    with sa.create_engine(url).begin() as c:
        c.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
    migrate.upgrade(url)
    with make_engine(url).connect() as c:
        held = c.execute(text("SELECT count(*) FROM households")).scalar()
    if held == 0:
        load_city(url, args.households, args.seed)
    elif held != args.households:
        raise SystemExit(f"{args.db} holds {held:,} households, not {args.households:,}: drop it or name another --db")
    else:
        print(f"city: reusing {args.db} ({held:,} households)")
    return url, False


def household_positions(url: str) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 lon/lat (degrees) of every household, in id order (so a seed picks the same tiles again)."""
    with make_engine(url).connect() as c:
        xy = np.array(c.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM households ORDER BY household_id")).all())
    return xy[:, 0], xy[:, 1]


def load() -> str:
    """The 1-minute load average, as ``uptime`` prints it."""
    return f"{os.getloadavg()[0]:.2f}"


def start(cmd: list[str], env: dict, health: str) -> subprocess.Popen:
    """Start a server subprocess and wait until ``health`` answers."""
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(300):
        try:
            urllib.request.urlopen(health, timeout=2)
            return proc
        except (urllib.error.URLError, ConnectionError) as err:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited: {proc.stderr.read().decode()[-2000:]}") from err
            time.sleep(0.2)
    raise RuntimeError(f"{health} never answered")


def fetch(url: str, headers: dict) -> tuple[float, int]:
    """Milliseconds and bytes of one GET (a 204 counts as 0 bytes)."""
    t = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=120) as r:
        body = r.read()
    return (time.perf_counter() - t) * 1000, len(body)


def run(args) -> None:
    url, drop = open_city(args)
    procs = []
    try:
        lon, lat = household_positions(url)
        from geodata.store import auth as auth_store
        from geodata.store import grid_figures as figures

        _, token = auth_store.create_token(make_engine(url), "admin", ["*"])
        figures.ensure_fresh(make_engine(url))
        time_rebuilds(url)
        with make_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            # the timed rebuilds rewrote grid_figures rows: vacuum as autovacuum would, before measuring
            c.execute(text("VACUUM ANALYZE grid_figures, h3_counts"))
        procs = start_servers(url, args)
        print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
        print(f"{'layer':<11}{'z':>3} | {'gridmap p50':>11} {'p95':>7} {'kB max':>7} | "
              f"{'tipg p50':>9} {'p95':>7} {'kB max':>7} | {'p50 ratio':>9} {'p95 ratio':>9} | load")
        rng = np.random.default_rng(args.seed)
        for layer in args.layers.split(","):
            for z in ZOOMS:
                picks = rng.integers(0, len(lon), args.per_zoom)
                ours, theirs = measure(args, token, layer, z, [tile_of(lon[i], lat[i], z) for i in picks])
                print(f"{layer:<11}{z:>3} | {_row(ours)} | {_row(theirs)} | {_ratios(ours, theirs)} | {load()}")
        print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        if drop:
            drop_database(url)


def time_rebuilds(url: str) -> None:
    """What the first grids / households / members tile after a write pays, timed apart from the tiles:
    the rebuild of ``grid_figures`` and ``h3_counts`` after a write marked the tables named."""
    from geodata.store import grid_figures as figures

    engine = make_engine(url)
    for marks in (("links",), ("members",), ("households",), ("grids", "households", "members")):
        with engine.begin() as c:
            for m in marks:
                c.execute(text("INSERT INTO grid_figures_dirty (table_name) VALUES (:m)"), {"m": m})
        t0 = time.perf_counter()
        figures.refresh(engine)
        print(f"rebuild after a write to {'+'.join(marks)} (no count changed): "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms (load {load()})")


def start_servers(url: str, args) -> list[subprocess.Popen]:
    """gridmap (one uvicorn worker, this interpreter) and tipg (one worker, its own virtualenv)."""
    pg = url.replace("postgresql+psycopg://", "postgresql://")
    ours = start([sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", str(args.port),
                  "--workers", "1"], {"GRIDMAP_DATABASE_URL": url, "PYTHONPATH": str(ROOT)},
                 f"http://127.0.0.1:{args.port}/health")
    theirs = start([str(Path(args.tipg_venv) / "bin" / "uvicorn"), "tipg.main:app", "--port", str(args.port + 1),
                    "--workers", "1"], {"DATABASE_URL": pg, "TIPG_DB_SCHEMAS": '["public"]'},
                   f"http://127.0.0.1:{args.port + 1}/collections")
    return [ours, theirs]


def measure(args, token: str, layer: str, z: int, tiles: list[tuple[int, int]]):
    """Each tile from both servers, alternating which goes first (the second finds the pages the first
    read in PostgreSQL's cache), after one unmeasured warm-up request to each."""
    collection, props = LAYERS[layer]

    def ours(x, y):
        return fetch(f"http://127.0.0.1:{args.port}/tiles/{layer}/{z}/{x}/{y}.mvt", {"Authorization": f"Bearer {token}"})

    def theirs(x, y):
        return fetch(f"http://127.0.0.1:{args.port + 1}/collections/{collection}/tiles/WebMercatorQuad/"
                     f"{z}/{x}/{y}?properties={props}", {})

    ours(*tiles[0]), theirs(*tiles[0])
    a, b = [], []
    for i, (x, y) in enumerate(tiles):
        if i % 2:
            b.append(theirs(x, y))
            a.append(ours(x, y))
        else:
            a.append(ours(x, y))
            b.append(theirs(x, y))
    return a, b


def _row(samples: list[tuple[float, int]]) -> str:
    ms = np.array([s[0] for s in samples])
    kb = np.array([s[1] for s in samples]) / 1024
    return f"{np.percentile(ms, 50):>9.1f}ms {np.percentile(ms, 95):>5.1f}ms {kb.max():>7.1f}"


def _ratios(ours: list[tuple[float, int]], theirs: list[tuple[float, int]]) -> str:
    """gridmap / tipg at p50 and p95 (under 1: gridmap is faster)."""
    a, b = np.array([s[0] for s in ours]), np.array([s[0] for s in theirs])
    return (f"{np.percentile(a, 50) / np.percentile(b, 50):>9.2f} "
            f"{np.percentile(a, 95) / np.percentile(b, 95):>9.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--households", type=int, default=200_000, help="households in the synthetic city")
    p.add_argument("--per-zoom", type=int, default=20, help="tiles requested per zoom and layer from each server")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--layers", default=",".join(LAYERS), help="comma-separated layers to measure (grids,households)")
    p.add_argument("--db", help="build the city into this database once and keep it; later runs reuse it")
    p.add_argument("--port", type=int, default=8731, help="gridmap's port; tipg gets the next one")
    p.add_argument("--tipg-venv", default="/work/tipg-venv", help="virtualenv holding tipg and uvicorn")
    run(p.parse_args())


if __name__ == "__main__":
    main()
