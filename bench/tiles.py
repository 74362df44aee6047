"""Vector tile benchmark: gridmap's ``/tiles/{layer}/{z}/{x}/{y}.mvt`` against tipg, the maintained OGC
Features + Tiles server for PostGIS, serving the same tables of one database, in one run.

    python bench/tiles.py --households 200000 --per-zoom 20

Builds a synthetic city (``geodata.synth.synth_city``) in a fresh PostGIS database, starts both servers
as subprocesses (tipg from its own virtualenv, ``--tipg-venv``, default /work/tipg-venv, so it does not
disturb the project's), requests the same tiles from both over HTTP, one at a time, and prints p50 / p95
time (ms) and bytes per tile for zooms 12–17. Tiles are drawn at random under households, so none is
empty. tipg serves the tables as they are (households as points at every zoom, capped by its
``TIPG_MAX_FEATURES_PER_TILE``); gridmap sends H3 aggregates below zoom 16. Goal (issue 13): ≤ tipg's
time and ≤ 500 kB per tile. The caller is an admin token (every region, points from zoom 16). The
one-off rebuild of ``grid_figures`` after the import (what the first grids tile after any write pays)
is timed and printed separately.
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

from conftest import create_database, drop_database  # noqa: E402 - importable only after the sys.path lines above

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


def load_city(url: str, households: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Synthesise and import the city; returns household lon/lat and the load time in seconds."""
    from geodata.io import normalise
    from geodata.synth import synth_city

    t0 = time.perf_counter()
    city = synth_city(households, seed=seed, households_per_grid=400)
    engine = make_engine(url)
    for layer in ("streets", "communities", "grids", "households", "members", "service_centres"):
        import_layer(engine, layer, normalise(city[layer], layer))
    hh = city["households"]
    print(f"city: {len(hh):,} households, {len(city['grids']):,} grids, loaded in {time.perf_counter() - t0:.0f} s")
    return hh.geometry.x.to_numpy(), hh.geometry.y.to_numpy(), time.perf_counter() - t0


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
    url = create_database("gridmap_bench_tiles")
    procs = []
    try:
        migrate.upgrade(url)
        lon, lat, _ = load_city(url, args.households, args.seed)
        from geodata.store import auth as auth_store

        _, token = auth_store.create_token(make_engine(url), "admin", ["*"])
        # the first grids tile after a write rebuilds grid_figures; time that once, apart from the tiles
        from geodata.store import grid_figures as figures

        t0 = time.perf_counter()
        figures.ensure_fresh(make_engine(url))
        print(f"grid figures rebuilt after the import in {(time.perf_counter() - t0) * 1000:.0f} ms")
        pg = url.replace("postgresql+psycopg://", "postgresql://")
        procs.append(start([sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--port",
                            str(args.port), "--workers", "1"], {"GRIDMAP_DATABASE_URL": url, "PYTHONPATH": str(ROOT)},
                           f"http://127.0.0.1:{args.port}/health"))
        procs.append(start([str(Path(args.tipg_venv) / "bin" / "uvicorn"), "tipg.main:app", "--port",
                            str(args.port + 1), "--workers", "1"],
                           {"DATABASE_URL": pg, "TIPG_DB_SCHEMAS": '["public"]'},
                           f"http://127.0.0.1:{args.port + 1}/collections"))
        rng = np.random.default_rng(args.seed)
        print(f"{'layer':<11}{'z':>3} | {'gridmap p50':>11} {'p95':>7} {'kB p50':>7} {'kB max':>7} | "
              f"{'tipg p50':>9} {'p95':>7} {'kB p50':>7} {'kB max':>7}")
        for layer, (collection, props) in LAYERS.items():
            for z in ZOOMS:
                picks = rng.integers(0, len(lon), args.per_zoom)
                tiles = [tile_of(lon[i], lat[i], z) for i in picks]
                ours = [fetch(f"http://127.0.0.1:{args.port}/tiles/{layer}/{z}/{x}/{y}.mvt",
                              {"Authorization": f"Bearer {token}"}) for x, y in tiles]
                theirs = [fetch(f"http://127.0.0.1:{args.port + 1}/collections/{collection}/tiles/WebMercatorQuad/"
                                f"{z}/{x}/{y}?properties={props}", {}) for x, y in tiles]
                print(f"{layer:<11}{z:>3} | {_row(ours)} | {_row(theirs)}")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        drop_database(url)


def _row(samples: list[tuple[float, int]]) -> str:
    ms = np.array([s[0] for s in samples])
    kb = np.array([s[1] for s in samples]) / 1024
    return (f"{np.percentile(ms, 50):>9.1f}ms {np.percentile(ms, 95):>5.1f}ms {np.percentile(kb, 50):>7.1f} "
            f"{kb.max():>7.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--households", type=int, default=200_000, help="households in the synthetic city")
    p.add_argument("--per-zoom", type=int, default=20, help="tiles requested per zoom and layer from each server")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--port", type=int, default=8731, help="gridmap's port; tipg gets the next one")
    p.add_argument("--tipg-venv", default="/work/tipg-venv", help="virtualenv holding tipg and uvicorn")
    run(p.parse_args())


if __name__ == "__main__":
    main()
