"""Leaders' page benchmark: first map frame and figures of ``/leader`` in headless Chromium, ``/incidents/stats``
for the whole city, and the Excel and PDF exports — on a synthetic city in a fresh PostGIS database.

    python bench/leader.py --households 200000 --incidents 50000

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


def timed_get(url: str, headers: dict) -> tuple[float, int]:
    """Seconds and bytes of one GET."""
    t = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=600) as r:
        body = r.read()
    return time.perf_counter() - t, len(body)


def browser_figures(base: str, street: str) -> tuple[float, float, str]:
    """Log in as the street's leader in Chromium; seconds to the figures and to the first map frame,
    and the session cookie (for the exports)."""
    from playwright.sync_api import sync_playwright

    from api.usecases.reports import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        page = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN").new_page()
        page.goto(base + "/login")
        page.fill("input[name=username]", "bench-leader")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/leader")
        page.goto("about:blank")
        page.wait_for_timeout(500)  # the tiles of the page the login landed on are all in
        tiles: list[float] = []
        page.on("response", lambda r: tiles.append(time.perf_counter()) if "/tiles/grids/" in r.url else None)
        t0 = time.perf_counter()
        page.goto(f"{base}/leader?region={street}", wait_until="domcontentloaded")
        # figures: the server-rendered HTML holds them, painted at the first contentful paint
        figures = page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || "
                                "performance.getEntriesByType('navigation')[0]).startTime || "
                                "performance.getEntriesByType('navigation')[0].responseEnd") / 1000
        page.wait_for_selector("#leader-map.mounted canvas", timeout=120_000)
        while not tiles and time.perf_counter() - t0 < 120:
            page.wait_for_timeout(20)
        page.wait_for_function("document.querySelector('#leader-map canvas').width > 0")
        first_frame = max(tiles[0], time.perf_counter()) - t0 if tiles else float("nan")
        cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "gridmap_session")
        browser.close()
    return figures, first_frame, cookie


def run(args) -> None:
    import socket
    import subprocess

    url = create_database("gridmap_bench_leader")
    proc = None
    try:
        migrate.upgrade(url)
        street = load(url, args.households, args.incidents, args.seed)
        from geodata.store import auth as auth_store
        from geodata.store import users

        engine = make_engine(url)
        _, token = auth_store.create_token(engine, "admin", ["*"])
        users.create_user(engine, "bench-leader", PASSWORD, "leader", [street])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", str(port),
                                 "--workers", "1", "--log-level", "warning"],
                                env={"GRIDMAP_DATABASE_URL": url, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        _wait(base + "/health")
        admin = {"Authorization": f"Bearer {token}"}
        times = [timed_get(f"{base}/incidents/stats?region=*", admin)[0] for _ in range(args.repeat)]
        print(f"/incidents/stats city-wide: p50 {statistics.median(times) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms ({args.repeat} requests; goal < 300 ms)")
        figures, frame, cookie = browser_figures(base, street)
        print(f"/leader street {street}: figures {figures:.2f} s, first map frame {frame:.2f} s (goal < 2 s)")
        session = {"Cookie": f"gridmap_session={cookie}"}
        for what, goal in (("xlsx", 10), ("pdf", 15)):
            seconds, size = timed_get(f"{base}/leader/report.{what}?region={street}", session)
            print(f"/leader/report.{what}: {seconds:.2f} s, {size / 1024:.0f} kB (goal < {goal} s)")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
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
    run(p.parse_args())


if __name__ == "__main__":
    main()
