"""Soak: minutes of mixed traffic against a real server on loopback; errors, p99 over time, memory.

Sets up a throwaway database on the local PostgreSQL (``GRIDMAP_TEST_ADMIN_URL``, default the local
server) with a synthetic city, starts ``gridmap serve`` (as deployed) on a free 127.0.0.1 port, and
runs ``--workers`` client threads of mixed requests — readers (nearest responder, incident lists,
coverage, maps, a member's households, the audit log), writers (incident reports and their life
cycle, 包片联户 recomputes of one grid) and hostile requests (no token, bad input) — until
``--minutes`` have passed. Then it stops by itself, and removes the server and the database.

Printed: requests and errors (a 5xx, a transport failure or an answer other than the one the request
kind expects), latency p50/p99 per time window, and the server's resident memory (RSS, from
``/proc``) after warm-up and at the end, then PASS/FAIL for: no errors, p99 per window flat (the later
half's median within ×1.5 of the earlier half's), memory flat (≤ 25 MiB growth after the first window), with ``uptime`` (the
machine is shared). Run: ``PYTHONPATH=. .venv/bin/python bench/soak.py --minutes 5``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get("GRIDMAP_TEST_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


# -- set-up ----------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_database() -> str:
    import sqlalchemy as sa

    name = f"gridmap_soak_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with eng.begin() as c:
        c.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))
    return url


def drop_database(url: str) -> None:
    import sqlalchemy as sa

    name = sa.engine.make_url(url).database
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def seed(url: str, households: int, seed_: int) -> dict:
    """Migrate, load a synthetic city, make tokens; returns what the traffic needs."""
    from geodata.io import normalise
    from geodata.store import auth as store
    from geodata.store import migrate
    from geodata.store.importer import import_layer
    from geodata.store.session import make_engine
    from geodata.synth import synth_city

    migrate.upgrade(url)
    eng = make_engine(url)
    city = synth_city(households, seed=seed_)
    for layer in ("streets", "communities", "grids", "households", "members", "service_centres"):
        import_layer(eng, layer, normalise(city[layer], layer))
    street = str(city["streets"]["code"].iloc[0])
    member = str(city["members"]["member_id"].iloc[0])
    member_grid = str(city["members"]["grid_code"].iloc[0])
    tokens = {
        "admin": store.create_token(eng, "admin", ["*"], label="soak")[1],
        "leader": store.create_token(eng, "leader", [street], label="soak")[1],
        "dispatcher": store.create_token(eng, "dispatcher", [street], label="soak")[1],
        "responder": store.create_token(eng, "responder", [member_grid], member_id=member, label="soak")[1],
        "viewer": store.create_token(eng, "viewer", [street], label="soak")[1],
    }
    g = city["grids"]
    minx, miny, maxx, maxy = g.total_bounds
    # Incident reports fall inside the dispatcher's street: a point outside it (or between grids) is refused
    # with 404 by design, which the soak would count as an error.
    own = g[g["community_code"].isin(city["communities"].loc[city["communities"]["street_code"] == street, "code"])]
    inside = [(float(p.x), float(p.y)) for p in own.geometry.sample_points(20, rng=seed_).explode()]
    return {"tokens": tokens, "street": street, "communities": city["communities"]["code"].astype(str).tolist(),
            "grids": g["grid_code"].astype(str).tolist(), "members": city["members"]["member_id"].astype(str).tolist(),
            "member": member, "bounds": (float(minx), float(miny), float(maxx), float(maxy)), "inside": inside,
            "households": len(city["households"])}


class Server:
    """``gridmap serve`` in a subprocess on loopback."""

    def __init__(self, url: str):
        self.port = _free_port()
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"gridmap_soak_{self.port}.log"
        self.log = open(self.log_path, "w")
        env = {**os.environ, "GRIDMAP_DATABASE_URL": url}
        # as deployed: ``gridmap serve`` (uvloop, httptools, start-up objects frozen out of the collector)
        self.proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1",
                                      "--port", str(self.port), "--log-level", "warning"],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + self.log_path.read_text()[-3000:])
            try:
                if httpx.get(self.base + "/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not come up")

    def rss_mb(self) -> float:
        """Resident memory of the server process in MiB (VmRSS)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.log.close()


# -- traffic ---------------------------------------------------------------------------------------

# ruff counts the branches of all the nested request closures together; each one is short.
def make_requests(ctx: dict):  # noqa: C901
    """Request kinds: name → (weight, function(client, rng) -> (response, expected statuses))."""
    t = ctx["tokens"]

    def h(role):
        return {"Authorization": f"Bearer {t[role]}"}

    def point(rng):
        minx, miny, maxx, maxy = ctx["bounds"]
        return float(rng.uniform(minx, maxx)), float(rng.uniform(miny, maxy))

    opened: list[str] = []
    lock = threading.Lock()

    def health(c, rng):
        return c.get("/health"), {200}

    def nearest(c, rng):
        lon, lat = point(rng)
        return c.get("/responders/nearest", params={"lon": lon, "lat": lat, "k": 5}, headers=h("dispatcher")), {200}

    def report(c, rng):
        lon, lat = ctx["inside"][int(rng.integers(len(ctx["inside"])))]
        r = c.post("/incidents", json={"lon": lon, "lat": lat, "category": rng.choice(["环境卫生", "矛盾纠纷", "民政"]),
                                       "source": "soak"}, headers=h("dispatcher"))
        if r.status_code == 201:
            with lock:
                opened.append(r.json()["incident_id"])
        return r, {201}

    def lifecycle(c, rng):
        with lock:
            if not opened:
                return c.get("/health"), {200}
            iid = opened.pop(rng.integers(len(opened)))
        r = c.post(f"/incidents/{iid}/assign", json={}, headers=h("dispatcher"))
        if r.status_code != 200:
            return r, {200, 409}  # nobody suitable/available: a refusal, not an error
        r = c.post(f"/incidents/{iid}/accept", headers=h("dispatcher"))
        if r.status_code != 200:
            return r, {200}
        r = c.post(f"/incidents/{iid}/close", headers=h("dispatcher"))
        if r.status_code != 200:
            return r, {200}
        return c.post(f"/incidents/{iid}/rate", json={"rating": int(rng.integers(1, 6))}, headers=h("dispatcher")), {200}

    def incidents(c, rng):
        return c.get("/incidents", params={"region": ctx["street"], "limit": 200}, headers=h("leader")), {200}

    def coverage(c, rng):
        return c.get("/coverage", params={"region": rng.choice(ctx["communities"])}, headers=h("viewer")), {200}

    def gaps(c, rng):
        return c.get("/gaps", params={"region": rng.choice(ctx["communities"])}, headers=h("leader")), {200}

    def member_households(c, rng):
        return c.get(f"/members/{rng.choice(ctx['members'])}/households", headers=h("leader")), {200}

    def my_households(c, rng):
        return c.get("/me/households", headers=h("responder")), {200}

    def map_(c, rng):
        return c.get("/maps/coverage", params={"region": rng.choice(ctx["communities"]), "tiles": "none"},
                     headers=h("leader")), {200}

    def recompute(c, rng):
        return c.post("/links/recompute", json={"region": rng.choice(ctx["grids"])}, headers=h("leader")), {200, 404}

    def audit(c, rng):
        return c.get("/audit", params={"limit": 50}, headers=h("admin")), {200}

    def hostile(c, rng):
        k = int(rng.integers(4))
        if k == 0:
            return c.get("/incidents"), {401}
        if k == 1:
            return c.get("/audit", headers=h("viewer")), {403}
        if k == 2:
            return c.post("/incidents", json={"lon": 30.2, "lat": 120.1, "category": "x"}, headers=h("dispatcher")), {422}
        return c.get("/coverage", params={"region": "' OR 1=1 --"}, headers=h("admin")), {404}

    return {
        "health": (3, health), "nearest": (20, nearest), "report": (8, report), "lifecycle": (6, lifecycle),
        "incidents": (10, incidents), "coverage": (8, coverage), "gaps": (4, gaps),
        "member_households": (12, member_households), "my_households": (8, my_households), "map": (3, map_),
        "recompute": (2, recompute), "audit": (4, audit), "hostile": (6, hostile),
    }


def run(args) -> dict:
    import httpx

    url = create_database()
    server = None
    try:
        t0 = time.time()
        ctx = seed(url, args.households, args.seed)
        print(f"seeded {ctx['households']:,} households, {len(ctx['grids'])} grids in {time.time() - t0:.1f} s")
        server = Server(url)
        kinds = make_requests(ctx)
        names = list(kinds)
        weights = np.array([kinds[n][0] for n in names], dtype=float)
        weights /= weights.sum()

        # Warm-up: every kind once, so import-time and first-query costs are not counted as a trend.
        with httpx.Client(base_url=server.base, timeout=120) as c:
            rng = np.random.default_rng(args.seed)
            for n in names:
                kinds[n][1](c, rng)
        rss_start = server.rss_mb()

        records: list[tuple[float, str, float, int, bool]] = []
        rec_lock = threading.Lock()
        start = time.monotonic()
        deadline = start + args.minutes * 60
        rss_samples = [(0.0, rss_start, _loadavg())]

        def worker(i: int):
            rng = np.random.default_rng(args.seed * 1000 + i)
            with httpx.Client(base_url=server.base, timeout=120) as c:
                while time.monotonic() < deadline:
                    name = names[int(rng.choice(len(names), p=weights))]
                    t = time.monotonic()
                    try:
                        resp, expected = kinds[name][1](c, rng)
                        status, ok = resp.status_code, resp.status_code in expected
                    except httpx.HTTPError:
                        status, ok = 0, False
                    dt = time.monotonic() - t
                    with rec_lock:
                        records.append((t - start, name, dt, status, ok))

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(args.workers)]
        for th in threads:
            th.start()
        while any(th.is_alive() for th in threads):
            time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
            if time.monotonic() < deadline + 1:
                rss_samples.append((time.monotonic() - start, server.rss_mb(), _loadavg()))
            if time.monotonic() > deadline + 300:  # a hung request: stop anyway (threads are daemons)
                print("some requests still running 5 min after the end; stopping")
                break
        rss_end = server.rss_mb()
        alive = server.proc.poll() is None
    finally:
        if server is not None:
            server.stop()
        drop_database(url)
    return summarise(records, args, rss_start, rss_end, rss_samples, alive, server.log_path if server else None)


def _loadavg() -> float:
    """1-minute load average of the machine (the soak shares its cores with other work)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


def summarise(records, args, rss_start, rss_end, rss_samples, alive, log_path) -> dict:
    window = args.window
    by_window = defaultdict(list)
    health = defaultdict(list)
    for t, name, dt, _status, ok in records:
        by_window[int(t // window)].append((dt, ok))
        if name == "health":
            health[int(t // window)].append(dt * 1000)
    samples = defaultdict(list)
    for t, rss, load in rss_samples:
        samples[int(t // window)].append((rss, load))
    errors = [(name, status) for t, name, dt, status, ok in records if not ok]
    five_xx = sum(1 for _, s in errors if s >= 500)
    transport = sum(1 for _, s in errors if s == 0)
    print(f"\n{len(records):,} requests in {args.minutes:g} min with {args.workers} workers "
          f"({len(records) / (args.minutes * 60):.1f} req/s)")
    print(f"errors: {len(errors)} (5xx {five_xx}, transport {transport}, unexpected 4xx "
          f"{len(errors) - five_xx - transport})" + (f": {Counter(errors).most_common(5)}" if errors else ""))
    print(f"{'window':>10} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'health p50':>11} "
          f"{'RSS MiB':>8} {'load':>6}")
    windows = []
    for w in sorted(by_window):
        lat = np.array([d for d, _ in by_window[w]]) * 1000
        errs = sum(1 for _, ok in by_window[w] if not ok)
        p50, p99 = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
        hp50 = float(np.median(health[w])) if health[w] else float("nan")
        rss = max((r for r, _ in samples[w]), default=float("nan"))
        load = float(np.mean([ld for _, ld in samples[w]])) if samples[w] else float("nan")
        windows.append({"from_s": w * window, "requests": len(lat), "p50_ms": p50, "p99_ms": p99, "errors": errs,
                        "health_p50_ms": hp50, "rss_mb": rss, "load": load})
        print(f"{w * window:>8.0f} s {len(lat):>9} {p50:>8.1f} {p99:>8.1f} {errs:>7} {hp50:>11.1f} {rss:>8.0f} "
              f"{load:>6.1f}")
    per_kind = defaultdict(list)
    for _t, name, dt, _status, _ok in records:
        per_kind[name].append(dt * 1000)
    print(f"\n{'kind':>18} {'n':>6} {'p50 ms':>8} {'p99 ms':>8}")
    kinds = {}
    for name, lat in sorted(per_kind.items()):
        a = np.array(lat)
        kinds[name] = {"n": len(a), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}
        print(f"{name:>18} {len(a):>6} {kinds[name]['p50_ms']:>8.1f} {kinds[name]['p99_ms']:>8.1f}")
    print(f"\nserver RSS: {rss_start:.0f} MiB after warm-up → {rss_end:.0f} MiB at the end "
          f"({rss_end - rss_start:+.0f} MiB); server {'still running' if alive else 'DIED'}")
    if log_path and log_path.exists():
        tracebacks = log_path.read_text(errors="replace").count("Traceback")
        print(f"server log: {tracebacks} traceback(s) ({log_path})")
    flat = verdict(windows, rss_samples, len(errors), alive)
    return {"requests": len(records), "errors": len(errors), "five_xx": five_xx, "transport_errors": transport,
            "windows": windows, "kinds": kinds, "rss_start_mb": rss_start, "rss_end_mb": rss_end,
            "rss_samples": rss_samples, "server_alive": alive, "flat": flat}


#: Flat enough: the later half's median p99 within this factor of the earlier half's, and resident
#: memory grown by at most RSS_GROWTH_MB from the first window's peak to the end (pools and caches fill
#: in the first seconds and then settle; a leak keeps growing).
P99_DRIFT, RSS_GROWTH_MB = 1.5, 25.0


def verdict(windows: list[dict], rss_samples, errors: int, alive: bool) -> bool:
    """Print and return whether the soak passed: 0 errors, the server alive, p99 per window flat and
    memory flat. The machine is shared, so the load beside each window says whether a p99 step is ours."""
    full = [w for w in windows if w["requests"] >= 20][:-1] or windows  # the last window is partial
    p99 = np.array([w["p99_ms"] for w in full])
    half = max(1, len(p99) // 2)
    drift = float(np.median(p99[half:]) / np.median(p99[:half])) if len(p99) > 1 else 1.0
    # Memory after the first window (pools and caches fill up in the first seconds) to the end.
    settled = [r for t, r, _ in rss_samples if t <= (windows[0]["from_s"] + 30.0 if windows else 30.0)]
    end = [r for _, r, _ in rss_samples][-1:] or [float("nan")]
    growth = float(end[0] - max(settled)) if settled else float("nan")
    checks = [("errors = 0", errors == 0, f"{errors}"), ("server alive", alive, str(alive)),
              (f"p99 flat (later/earlier half ≤ {P99_DRIFT:g})", drift <= P99_DRIFT,
               f"{drift:.2f} (p99 {p99.min():.0f}–{p99.max():.0f} ms)"),
              (f"memory flat (≤ {RSS_GROWTH_MB:g} MiB after the 1st window)", growth <= RSS_GROWTH_MB,
               f"{growth:+.0f} MiB")]
    print()
    for text, ok, value in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text:44s} {value}")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    return all(ok for _, ok, _ in checks)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="How long to run (default 5).")
    p.add_argument("--workers", type=int, default=4, help="Client threads (default 4).")
    p.add_argument("--households", type=int, default=20_000, help="Size of the synthetic city (default 20,000).")
    p.add_argument("--window", type=float, default=30.0, help="Seconds per p99 window (default 30).")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="Also write the figures here.")
    args = p.parse_args(argv)
    random.seed(args.seed)
    out = run(args)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0 if out["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
