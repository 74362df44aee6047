"""Leaders' page benchmark: first map frame and figures of ``/leader`` in headless Chromium, ``/incidents/stats``
for the whole city, and the Excel and PDF exports — on a synthetic city in a fresh PostGIS database.

    python bench/leader.py --households 200000 --incidents 50000
    python bench/leader.py --households 1000000 --keep     # build once, keep the database
    python bench/leader.py --households 1000000 --reuse    # measure again on the kept database

``--keep`` leaves the database ``gridmap_bench_leader_<households>_<incidents>_<seed>`` in place;
``--reuse`` measures on it when it exists (migrated to head first; built and kept when it does not).

Builds the city with ``geodata.synth.synth_city`` (≈400 households per grid), adds ``--incidents``
incidents in one SQL statement (random grids, report times over the last year, a mix of closed,
rated, open and overdue), starts the app with uvicorn (one worker) and measures over HTTP:

* ``/incidents/stats?region=*`` (admin, the whole city): p50 / max of ``--repeat`` requests;
* ``/leader`` for one street as a leader, in Chromium (SwiftShader WebGL): time to the figures
  (DOMContentLoaded of the server-rendered page) and to the first map frame (the first grids tile
  drawn, the map's ``idle``);
* ``/leader/report.xlsx`` and ``/leader/report.pdf`` of that street.

Goals (issue 14, at 1M households / 2,550 grids / 50k incidents): page < 2 s, stats < 300 ms, Excel
< 10 s, PDF < 15 s. The sizes run are printed with the figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import create_database, drop_database  # noqa: E402  (tests/ joins the path above)

from geodata.store import migrate  # noqa: E402
from geodata.store.session import make_engine  # noqa: E402

PASSWORD = "bench-password-9"
CATEGORIES = ["环境卫生", "矛盾纠纷", "物业管理", "治安隐患", "便民服务"]

_INCIDENTS_SQL = """
WITH g AS (SELECT row_number() OVER (ORDER BY grid_code) AS n, grid_code, community_code,
                  ST_PointOnSurface(geom) AS p FROM grids),
gc AS (SELECT count(*) AS total FROM g),
m AS (SELECT grid_code, min(member_id) AS member_id FROM members GROUP BY grid_code),
raw AS (SELECT i, (SELECT total FROM gc) AS total, random() AS r1, random() AS r2, random() AS r3,
               now() - random() * interval '365 days' AS rep
        FROM generate_series(1, :n) AS i),
pick AS (SELECT raw.*, g.grid_code, g.community_code, g.p FROM raw JOIN g ON g.n = 1 + (raw.i % raw.total))
INSERT INTO incidents (incident_id, category, status, reported_at, deadline_at, grid_code, community_code,
                       street_code, assigned_member_id, assigned_at, accepted_at, closed_at, rating,
                       response_kind, h3, geom)
SELECT 'BENCH-' || i, (CAST(:cats AS text[]))[1 + i % 5],
       CASE WHEN r1 < 0.85 THEN (CASE WHEN r2 < 0.5 THEN 'rated' ELSE 'closed' END)
            WHEN r1 < 0.92 THEN 'accepted' ELSE 'assigned' END,
       rep, rep + interval '24 hours', pick.grid_code, pick.community_code, c.street_code, m.member_id,
       rep + interval '1 hour',
       CASE WHEN r1 < 0.92 THEN rep + r3 * interval '30 hours' END,
       CASE WHEN r1 < 0.85 THEN rep + interval '2 hours' + r3 * interval '40 hours' END,
       CASE WHEN r1 < 0.85 AND r2 < 0.5 THEN 1 + floor(r3 * 5)::int END,
       'ordinary', 0, ST_Translate(pick.p, (r2 - 0.5) * 0.0005, (r3 - 0.5) * 0.0005)
FROM pick LEFT JOIN communities c ON c.code = pick.community_code LEFT JOIN m ON m.grid_code = pick.grid_code
"""


def load(url: str, households: int, incidents: int, seed: int) -> str:
    """Import the synthetic city and the incidents; returns the first street's code."""
    from sqlalchemy import text

    from geodata.io import normalise
    from geodata.store.importer import import_layer
    from geodata.synth import synth_city

    t0 = time.perf_counter()
    city = synth_city(households, seed=seed, households_per_grid=400)
    engine = make_engine(url)
    for layer in ("streets", "communities", "grids", "households", "members", "service_centres"):
        import_layer(engine, layer, normalise(city[layer], layer))
    with engine.begin() as conn:
        conn.execute(text("SELECT setseed(:s)"), {"s": (seed % 1000) / 1000})
        conn.execute(text(_INCIDENTS_SQL), {"n": incidents, "cats": CATEGORIES})
        conn.execute(text("ANALYZE incidents"))
    print(f"city: {len(city['households']):,} households, {len(city['grids']):,} grids, "
          f"{len(city['streets']):,} streets, {incidents:,} incidents; loaded in {time.perf_counter() - t0:.0f} s")
    return str(city["streets"]["code"].iloc[0])


def load_avg() -> str:
    """The 1-minute load average, printed beside every figure (the machine is shared)."""
    import os

    return f"load {os.getloadavg()[0]:.2f}"


def timed_get(url: str, headers: dict) -> tuple[float, int]:
    """Seconds and bytes of one GET."""
    t = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=600) as r:
        body = r.read()
    return time.perf_counter() - t, len(body)


#: In-page timings (ms since navigation start) read once the map has drawn its first frame with grids:
#: marks set by gridmap-map.js and the resource timings of the page's own requests. Tiles are fetched in
#: MapLibre's workers, outside these timings: they are taken from Playwright's request events.
_PAGE_TIMINGS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  const mark = (n) => { const m = performance.getEntriesByName(n)[0]; return m ? m.startTime : null; };
  const first = (part) => { const r = res.filter(e => e.name.includes(part)); return r.length ?
    Math.min(...r.map(e => e.responseEnd)) : null; };
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return {origin: performance.timeOrigin, html: nav.responseEnd, dcl: nav.domContentLoadedEventEnd,
          fcp: fcp ? fcp.startTime : null, maplibre: first('maplibre-gl.js'), style: mark('gridmap-map-load'),
          tile_frame: mark('gridmap-first-tile-frame'), frame: mark('gridmap-first-frame')};
}"""


def _open_street(p, base: str, street: str, cookies: list) -> tuple[dict, list]:
    """A fresh browser (nothing cached) with the session cookie opens the street's page; the in-page timings
    at the first map frame and the requests finished by then."""
    from api.usecases.reports import CHROMIUM, CHROMIUM_ARGS

    browser = p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
    context.add_cookies(cookies)
    page = context.new_page()
    done: list = []
    page.on("requestfinished", lambda r: done.append(r))
    page.goto(f"{base}/leader?region={street}", wait_until="domcontentloaded")
    page.wait_for_function("() => performance.getEntriesByName('gridmap-first-frame').length > 0", timeout=120_000)
    timings = page.evaluate(_PAGE_TIMINGS)
    finished = list(done)
    timings["bytes"] = sum(r.sizes()["responseBodySize"] + r.sizes()["responseHeadersSize"] for r in finished)
    timings["requests"] = len(finished)
    tiles = [r for r in finished if "/tiles/grids/" in r.url]
    timings["tile"] = (min(r.timing["startTime"] + r.timing["responseEnd"] for r in tiles) - timings["origin"]
                       if tiles else None)
    page.wait_for_timeout(3000)  # the deferred layers' tiles, for the byte count of the whole view
    timings["bytes_3s"] = sum(r.sizes()["responseBodySize"] + r.sizes()["responseHeadersSize"] for r in done)
    timings["requests_3s"] = len(done)
    browser.close()
    return timings, finished


def browser_figures(base: str, street: str) -> tuple[dict, str]:
    """Log in as the street's leader in Chromium, then open the street's page afresh (empty cache); the
    page's timings (ms, see ``_PAGE_TIMINGS``) and the session cookie (for the exports)."""
    from playwright.sync_api import sync_playwright

    from api.usecases.reports import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        page = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN").new_page()
        page.goto(base + "/login")
        page.fill("input[name=username]", "bench-leader")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/leader**")
        cookies = page.context.cookies()
        browser.close()
        timings, _ = _open_street(p, base, street, cookies)
    cookie = next(c["value"] for c in cookies if c["name"] == "gridmap_session")
    return timings, cookie


def _ms(v) -> str:
    return "-" if v is None else f"{v / 1000:.2f} s"


def kept_name(args) -> str:
    """The name of the database ``--keep`` leaves and ``--reuse`` reads."""
    return f"gridmap_bench_leader_{args.households}_{args.incidents}_{args.seed}"


def open_database(args) -> tuple[str, str | None]:
    """``(url, street)``: the kept database when ``--reuse`` finds it (street None: read it), else a new one."""
    import sqlalchemy as sa
    from conftest import ADMIN_URL, _with_db

    name = kept_name(args)
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        exists = c.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if exists and not args.reuse:
            c.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        if not (exists and args.reuse) and (args.keep or args.reuse):
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    if not (args.keep or args.reuse):
        return create_database("gridmap_bench_leader"), None
    url = _with_db(ADMIN_URL, name)
    if exists and args.reuse:
        print(f"reusing database {name}")
        return url, _first_street(url)
    with sa.create_engine(url).begin() as c:
        c.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))
    return url, None


def _first_street(url: str) -> str | None:
    from sqlalchemy import text

    with make_engine(url).connect() as conn:
        return conn.execute(text("SELECT min(code) FROM streets")).scalar()


def prepare(args) -> tuple[str, str, str]:
    """``(url, street, admin token)``: the database built (or reused), migrated, with the bench users."""
    from sqlalchemy import text

    from geodata.store import auth as auth_store
    from geodata.store import users

    url, street = open_database(args)
    migrate.upgrade(url)
    if street is None:
        try:
            street = load(url, args.households, args.incidents, args.seed)
        except BaseException:
            drop_database(url)  # a half-built database must never be reused
            raise
    engine = make_engine(url)
    _, token = auth_store.create_token(engine, "admin", ["*"])
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE username = 'bench-leader'"))
    users.create_user(engine, "bench-leader", PASSWORD, "leader", [street])
    with engine.connect() as conn:
        sizes = conn.execute(text("SELECT (SELECT count(*) FROM households), (SELECT count(*) FROM grids), "
                                  "(SELECT count(*) FROM incidents), (SELECT count(*) FROM grids g JOIN communities c "
                                  "ON c.code = g.community_code WHERE c.street_code = :s)"), {"s": street}).one()
    print(f"sizes: {sizes[0]:,} households, {sizes[1]:,} grids, {sizes[2]:,} incidents; "
          f"street {street}: {sizes[3]} grids")
    return url, street, token


def run(args) -> None:
    import socket
    import subprocess

    url = None
    proc = None
    try:
        url, street, token = prepare(args)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", str(port),
                                 "--workers", "1", "--log-level", "warning"],
                                env={"GRIDMAP_DATABASE_URL": url, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        _wait(base + "/health")
        admin = {"Authorization": f"Bearer {token}"}
        first = timed_get(f"{base}/incidents/stats?region=*", admin)[0]
        times = [timed_get(f"{base}/incidents/stats?region=*", admin)[0] for _ in range(args.repeat)]
        print(f"/incidents/stats city-wide: first {first * 1000:.0f} ms, p50 {statistics.median(times) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms ({args.repeat} requests; goal < 300 ms) [{load_avg()}]")
        for attempt in ("cold", "warm"):  # cold: the first page view after the server started
            t, cookie = browser_figures(base, street)
            print(f"/leader street {street} ({attempt}): html {_ms(t['html'])}, figures (first paint) {_ms(t['fcp'])}, "
                  f"maplibre {_ms(t['maplibre'])}, map style {_ms(t['style'])}, first grids tile {_ms(t['tile'])}, "
                  f"first frame with a grids tile {_ms(t['tile_frame'])}, "
                  f"first map frame (every visible grids tile drawn) {_ms(t['frame'])} (goal < 2 s); "
                  f"{t['bytes'] / 1e6:.2f} MB in {t['requests']} "
                  f"requests by then, {t['bytes_3s'] / 1e6:.2f} MB in {t['requests_3s']} 3 s later (goal < 3 MB) "
                  f"[{load_avg()}]")
        session = {"Cookie": f"gridmap_session={cookie}"}
        for what, goal in (("xlsx", 10), ("pdf", 15)):
            seconds, size = timed_get(f"{base}/leader/report.{what}?region={street}", session)
            print(f"/leader/report.{what}: {seconds:.2f} s, {size / 1024:.0f} kB (goal < {goal} s) [{load_avg()}]")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # a PDF render still holding a worker thread
                proc.kill()
                proc.wait()
        if url is not None and not (args.keep or args.reuse):
            drop_database(url)


def _wait(url: str) -> None:
    for _ in range(600):
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} never answered")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--households", type=int, default=200_000)
    p.add_argument("--incidents", type=int, default=50_000)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the database (see --reuse)")
    p.add_argument("--reuse", action="store_true", help="measure on the kept database; build and keep it if missing")
    run(p.parse_args())


if __name__ == "__main__":
    main()
