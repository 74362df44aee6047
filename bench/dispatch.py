"""Benchmark: ``GET /responders/nearest`` under HTTP load against the bare PostGIS KNN query.

In one run, on one fresh PostGIS database holding ``--members`` (200,000) synthetic responders spread
over 15 km × 15 km of Hangzhou (random skills, 90 % available):

* **anchor** — the bare KNN query (``ORDER BY geom::geography <-> point LIMIT 5`` on the GiST
  geography index) timed from Python with psycopg: one connection in a loop (latency), and
  ``--anchor-threads`` connections at once (throughput the database alone allows);
* **service** — ``gridmap serve`` (uvicorn, ``--workers``) on loopback, loaded by ``wrk`` at fixed
  concurrency (closed loop), random points per request, with a dispatcher token; ``/health``
  (framework + ``SELECT 1``, no token) is loaded the same way as the floor of the HTTP stack;
* **where the time goes** — the per-request pieces timed in-process: token lookup, the store query
  through SQLAlchemy, the response model.

Needs ``wrk`` (Debian: ``apt-get install -y wrk``). Prints throughput, p50/p99 latency, errors and
the ratios to the anchor. The machine is shared, so figures move by ±20 % between runs.

Usage::

    .venv/bin/python bench/dispatch.py                      # 200k members, c = 1, 8 and 32
    .venv/bin/python bench/dispatch.py --members 20000 --duration 5
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import geopandas as gpd  # noqa: E402
import psycopg  # noqa: E402

from conftest import create_database, drop_database  # noqa: E402
from geodata.store import migrate  # noqa: E402
from geodata.store.importer import import_layer  # noqa: E402
from geodata.store.session import make_engine  # noqa: E402

LON0, LAT0 = 120.17, 30.28
SPAN_M = 15_000.0
M_PER_DEG_LAT = 111_195.08
M_PER_DEG_LON = M_PER_DEG_LAT * np.cos(np.radians(LAT0))
DLON, DLAT = SPAN_M / M_PER_DEG_LON, SPAN_M / M_PER_DEG_LAT
SKILLS = np.array(["法律", "医疗", "心理", "维修", "消防", "教育"])

KNN_SQL = ("SELECT member_id, geom::geography <-> ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography AS d "
           "FROM members WHERE available ORDER BY geom::geography <-> "
           "ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography LIMIT 5")


def members(n: int, seed: int = 0) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    lon = LON0 + (rng.random(n) - 0.5) * DLON
    lat = LAT0 + (rng.random(n) - 0.5) * DLAT
    skills = [",".join(rng.choice(SKILLS, rng.integers(0, 3), replace=False)) for _ in range(n)]
    return gpd.GeoDataFrame({"member_id": [f"M{i:07d}" for i in range(n)], "skills": skills,
                             "available": rng.random(n) < 0.9, "kind": "member"},
                            geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")


def queries(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return list(zip(LON0 + (rng.random(n) - 0.5) * DLON, LAT0 + (rng.random(n) - 0.5) * DLAT))


def pct(a, q) -> float:
    return float(np.percentile(np.asarray(a), q))


def anchor(dsn: str, n: int, threads: int) -> dict:
    """The bare KNN query from Python: sequential latency, then ``threads`` connections in parallel."""
    qs = queries(n)
    with psycopg.connect(dsn, prepare_threshold=0) as conn:
        for lon, lat in qs[:50]:  # warm up the cache and the prepared plan
            conn.execute(KNN_SQL, {"lon": lon, "lat": lat}).fetchall()
        lat_ms = []
        t0 = time.perf_counter()
        for lon, lat in qs:
            t = time.perf_counter()
            conn.execute(KNN_SQL, {"lon": lon, "lat": lat}).fetchall()
            lat_ms.append((time.perf_counter() - t) * 1e3)
        seq_s = time.perf_counter() - t0
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + KNN_SQL.replace(
            "%(lon)s", str(LON0)).replace("%(lat)s", str(LAT0))))
    done = [0] * threads

    def work(i):
        with psycopg.connect(dsn, prepare_threshold=0) as c:
            for lon, lat in qs[i::threads]:
                c.execute(KNN_SQL, {"lon": lon, "lat": lat}).fetchall()
                done[i] += 1

    t0 = time.perf_counter()
    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    par_s = time.perf_counter() - t0
    return {"p50_ms": pct(lat_ms, 50), "p99_ms": pct(lat_ms, 99), "seq_qps": n / seq_s,
            "par_qps": sum(done) / par_s, "plan": plan}


def in_process(url: str, token: str, n: int = 500) -> dict:
    """Per-request pieces of the route, timed in this process (ms, median). The shared engine
    (``make_engine``: pre-ping, BEGIN/ROLLBACK) is timed beside the autocommit reader the route uses."""
    from api.routes.dispatch import Responder
    from geodata.store import auth, dispatch as store

    eng = make_engine(url)
    reader = store.reader_engine(url)
    qs = queries(n, seed=5)
    t_tok, t_q, t_r, t_ser = [], [], [], []
    for lon, lat in qs:
        t = time.perf_counter()
        auth.find_token(eng, token)
        t_tok.append(time.perf_counter() - t)
        t = time.perf_counter()
        with eng.connect() as conn:
            store.nearest_responders(conn, lon, lat, k=5)
        t_q.append(time.perf_counter() - t)
        t = time.perf_counter()
        with reader.connect() as conn:
            rows = store.nearest_responders(conn, lon, lat, k=5)
        t_r.append(time.perf_counter() - t)
        t = time.perf_counter()
        [Responder(**r).model_dump_json() for r in rows]
        t_ser.append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in (
        ("token lookup (api.auth)", t_tok), ("store KNN, shared engine", t_q),
        ("store KNN, reader engine", t_r), ("response model", t_ser))}


LUA = """
math.randomseed(%(seed)d)
request = function()
  local lon = %(lon0)f + (math.random() - 0.5) * %(dlon)f
  local lat = %(lat0)f + (math.random() - 0.5) * %(dlat)f
  return wrk.format("GET", string.format("/responders/nearest?lon=%%.6f&lat=%%.6f&k=5", lon, lat))
end
"""


def _ms(s: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v


def run_wrk(url: str, conc: int, duration: int, script: str | None = None, headers: dict | None = None,
            threads: int = 1) -> dict:
    cmd = ["wrk", "-t", str(threads), "-c", str(conc), "-d", f"{duration}s", "--latency", "--timeout", "5s"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+\w+)", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    sock = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {"rps": rps, "p50_ms": _ms(lat["50"]), "p99_ms": _ms(lat["99"]), "requests": total,
            "errors": non2xx + sock}


def start_server(url: str, port: int, workers: int) -> subprocess.Popen:
    env = dict(os.environ, GRIDMAP_DATABASE_URL=url)
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "gridmap"), "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--workers", str(workers), "--log-level", "warning"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except Exception as err:
            if proc.poll() is not None:
                raise RuntimeError("server died: " + proc.stderr.read().decode()[-2000:]) from err
            time.sleep(0.1)
    stop_server(proc)
    raise RuntimeError("server did not come up")


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server we started: its own process group (uvicorn and its workers), by id."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=200_000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--anchor-queries", type=int, default=3000)
    ap.add_argument("--anchor-threads", type=int, default=4)
    ap.add_argument("--port", type=int, default=18766)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    url = create_database("gridmap_bench_dispatch")
    proc = None
    try:
        migrate.upgrade(url)
        eng = make_engine(url)
        t = time.perf_counter()
        gdf = members(args.members)
        import_layer(eng, "members", gdf)
        with eng.begin() as c:
            c.exec_driver_sql("ANALYZE members")
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work shares them)")
        print(f"members: {args.members:,} loaded in {time.perf_counter() - t:.1f} s "
              f"(over {SPAN_M / 1000:.0f} km × {SPAN_M / 1000:.0f} km, 90 % available)")

        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        a = anchor(dsn, args.anchor_queries, args.anchor_threads)
        print("\n== anchor: bare PostGIS KNN (k=5, available) from Python/psycopg")
        print(f"  1 connection : p50 {a['p50_ms']:.3f} ms  p99 {a['p99_ms']:.3f} ms  {a['seq_qps']:,.0f} q/s")
        print(f"  {args.anchor_threads} connections: {a['par_qps']:,.0f} q/s")
        print("  plan: " + " | ".join(line.strip() for line in a["plan"].splitlines()[:3]))

        from geodata.store import auth
        _, token = auth.create_token(eng, "dispatcher", ["*"], label="bench")
        parts = in_process(url, token)
        print("\n== in-process pieces of one request (median)")
        for k, v in parts.items():
            print(f"  {k:28s} {v:7.3f} ms")

        proc = start_server(url, args.port, args.workers)
        base = f"http://127.0.0.1:{args.port}"
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(LUA % {"seed": 42, "lon0": LON0, "lat0": LAT0, "dlon": DLON, "dlat": DLAT})
            script = f.name
        hdr = {"Authorization": f"Bearer {token}"}
        run_wrk(base + "/responders/nearest", 4, 2, script, hdr)  # warm-up
        print(f"\n== HTTP on loopback: gridmap serve --workers {args.workers}, wrk {args.duration} s per row")
        print(f"  {'endpoint':22s} {'conc':>4s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>7s}")
        for conc in args.concurrency:
            h = run_wrk(base + "/health", conc, args.duration)
            print(f"  {'/health (floor)':22s} {conc:4d} {h['rps']:8,.0f} {h['p50_ms']:8.2f} {h['p99_ms']:8.2f} {h['errors']:7d}")
            r = run_wrk(base + "/responders/nearest", conc, args.duration, script, hdr)
            print(f"  {'/responders/nearest':22s} {conc:4d} {r['rps']:8,.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
                  f"{r['errors']:7d}"
                  f"   ratio to anchor: p50 ×{r['p50_ms'] / a['p50_ms']:.1f}, "
                  f"throughput {r['rps'] / a['par_qps']:.2f} of the DB-only rate")
        os.unlink(script)
        print(f"\nload average after: {os.getloadavg()[0]:.1f}")
        print("target: p99 ≤ 10 ms at ≥ 1,000 req/s (2 shared cores, wrk and PostgreSQL on the same machine)")
    finally:
        if proc is not None:
            stop_server(proc)
        drop_database(url)


if __name__ == "__main__":
    main()
