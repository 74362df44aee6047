"""Faults: the database stops during an import or under the API, the API server is killed mid-write.

Runs against a throwaway PostgreSQL server (tests/throwaway_pg.py) started for this module on its
own port, which the tests stop and start; the machine's main cluster is never touched. The moments
"during an import" and "during a recompute" are made exact with a table lock taken from another
session: the writer blocks inside its transaction, and the fault strikes while it waits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import sqlalchemy as sa

from throwaway_pg import ThrowawayPostgres, free_port

pytestmark = [pytest.mark.db, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
LON, LAT = 120.17, 30.28


@pytest.fixture(scope="module")
def pg():
    server = ThrowawayPostgres()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture()
def db(pg, request):
    """A fresh migrated database on the throwaway server (the server is started if a test left it down)."""
    from geodata.store import migrate

    if not pg.running():
        pg.start()
    name = f"f_{uuid.uuid4().hex[:10]}"
    url = pg.create_database(name)
    migrate.upgrade(url)
    return url


def _engine(url):
    # A private engine (not the cached one): each test controls its own pool.
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def _households(n: int, prefix: str, seed: int = 0) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    # no grid_code: the store holds no grids here, and an imported code must name a stored grid (issue 11)
    return gpd.GeoDataFrame({"household_id": [f"{prefix}{i}" for i in range(n)],
                             "size": rng.integers(1, 6, n)},
                            geometry=gpd.points_from_xy(LON + rng.random(n) * 0.01, LAT + rng.random(n) * 0.01),
                            crs="EPSG:4326")


def _counts(url) -> dict[str, int]:
    eng = _engine(url)
    try:
        with eng.connect() as c:
            names = [r[0] for r in c.execute(sa.text(
                "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'spatial_ref_sys'"))]
            return {n: c.execute(sa.text(f'SELECT count(*) FROM "{n}"')).scalar_one() for n in sorted(names)}
    finally:
        eng.dispose()


def _blocked_on_lock(admin_url: str, dbname: str, query_prefix: str):
    """A predicate: some session of ``dbname`` waits on a lock while running ``query_prefix…``."""
    def check() -> bool:
        eng = sa.create_engine(admin_url, poolclass=sa.pool.NullPool)
        try:
            with eng.connect() as c:
                return bool(c.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND wait_event_type = 'Lock' "
                    "AND query ILIKE :q"), {"d": dbname, "q": query_prefix + "%"}).scalar())
        finally:
            eng.dispose()
    return check


# --- the database stops in the middle of an import ------------------------------------------------

@pytest.mark.parametrize("mode", ["immediate", "fast"])
def test_import_rolls_back_when_the_database_stops(pg, db, mode):
    from geodata.store.importer import import_layer

    eng = _engine(db)
    import_layer(eng, "households", _households(50, "OLD-"))
    before = _counts(db)

    # Hold a SHARE lock on households: the import can COPY into its staging table but its upsert waits.
    blocker = _engine(db).connect()
    blocker.execute(sa.text("LOCK TABLE households IN SHARE MODE"))
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = import_layer(eng, "households", _households(20_000, "NEW-", seed=1))
        except Exception as e:  # the connection dies under it
            outcome["error"] = e

    t = threading.Thread(target=run)
    t.start()
    dbname = sa.engine.make_url(db).database
    assert pg.wait_until(_blocked_on_lock(pg.admin_url, dbname, "INSERT INTO households"), 120), pg.log_text()
    pg.stop(mode)  # fast: sessions are terminated; immediate: like a power cut
    t.join(120)
    assert not t.is_alive()
    assert "error" in outcome and "result" not in outcome
    assert isinstance(outcome["error"], sa.exc.DBAPIError)
    try:
        blocker.close()
    except Exception:
        pass

    pg.start()
    after = _counts(db)
    assert after == before
    with _engine(db).connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM households WHERE household_id LIKE 'NEW-%'")).scalar() == 0
    eng.dispose()


def test_cli_import_reports_a_lost_database_and_changes_nothing(pg, db, tmp_path):
    """``gridmap import`` when the server is down: a message and a non-zero exit, nothing written."""
    from geodata.io import write_layer

    f = tmp_path / "households.geojson"
    write_layer(_households(10, "CLI-"), f)
    before = _counts(db)
    pg.stop("fast")
    try:
        env = {**os.environ, "GRIDMAP_DATABASE_URL": db, "COLUMNS": "300"}
        p = subprocess.run([str(Path(sys.executable).with_name("gridmap")), "import", "households", str(f)],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    finally:
        pg.start()
    out = p.stdout + p.stderr
    assert p.returncode == 3, out[-2000:]
    assert "Database unavailable" in out and "Traceback" not in out, out[-2000:]
    assert _counts(db) == before


# --- the API while the database is down ------------------------------------------------------------

class Server:
    """``uvicorn api.app:create_app`` in a subprocess on a free loopback port."""

    def __init__(self, url: str, extra_env: dict | None = None):
        self.port = free_port()
        env = {**os.environ, "GRIDMAP_DATABASE_URL": url, **(extra_env or {})}
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"gridmap_uvicorn_{self.port}.log", "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        import httpx

        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("uvicorn exited: " + self.output())
            try:
                self.client.get("/health")
                return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError("uvicorn did not come up: " + self.output())

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(60)

    def close(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture()
def server(db):
    s = Server(db)
    try:
        yield s
    finally:
        s.close()


def _admin(url) -> dict:
    from geodata.store import auth as store

    eng = _engine(url)
    try:
        _, tok = store.create_token(eng, "admin", ["*"])
    finally:
        eng.dispose()
    return {"Authorization": f"Bearer {tok}"}


def test_api_answers_503_while_the_database_is_down_and_recovers(pg, db, server):
    hdr = _admin(db)
    c = server.client
    assert c.get("/health").status_code == 200
    assert c.get("/audit", headers=hdr).status_code == 200  # the pool now holds a live connection

    pg.stop("immediate")
    down = [("GET", "/audit", {}), ("GET", "/health", {}), ("GET", "/coverage", {"params": {"region": "X"}}),
            ("GET", "/incidents", {}), ("POST", "/incidents", {"json": {"lon": LON, "lat": LAT, "category": "民政"}}),
            ("GET", "/responders/nearest", {"params": {"lon": LON, "lat": LAT}})]
    for method, path, kw in down:
        r = c.request(method, path, headers=hdr, **kw)
        assert r.status_code == 503, (path, r.status_code, r.text)
        assert int(r.headers["retry-after"]) > 0
        assert "unavailable" in r.text or "unreachable" in r.text or "lost" in r.text
    assert c.get("/audit").status_code in (401, 503)  # no token: never a 500

    pg.start()
    # Same server process, no restart: the pool drops the dead connections and reconnects.
    r = c.get("/audit", headers=hdr)
    assert r.status_code == 200, r.text
    assert c.get("/health").json()["database"] == "reachable"
    assert server.proc.poll() is None
    assert "Traceback" not in server.output()


# --- the API server is killed in the middle of a links recompute -----------------------------------

def _seed_city(url) -> str:
    """A small synthetic city (6 grids, 1,500 households, members); returns a community code."""
    from geodata.io import normalise
    from geodata.store.importer import import_layer
    from geodata.synth import synth_city

    city = synth_city(1500, seed=5)
    eng = _engine(url)
    try:
        for layer in ("streets", "communities", "grids", "households", "members"):
            import_layer(eng, layer, normalise(city[layer], layer))
    finally:
        eng.dispose()
    return str(city["communities"]["code"].iloc[0])


def _link_state(url) -> dict:
    eng = _engine(url)
    try:
        with eng.connect() as c:
            return {
                "runs": [tuple(r) for r in c.execute(sa.text(
                    "SELECT run_id, region, is_current FROM link_runs ORDER BY run_id"))],
                "links": c.execute(sa.text("SELECT count(*) FROM links")).scalar_one(),
                "current_links": c.execute(sa.text(
                    "SELECT count(*) FROM links l JOIN link_runs r USING (run_id) WHERE r.is_current")).scalar_one(),
                "households_twice": c.execute(sa.text(
                    "SELECT count(*) FROM (SELECT household_id FROM links l JOIN link_runs r USING (run_id) "
                    "WHERE r.is_current GROUP BY household_id HAVING count(*) > 1) d")).scalar_one(),
            }
    finally:
        eng.dispose()


@pytest.mark.parametrize("moment", ["mid-swap", "before-write"])
def test_server_killed_during_links_recompute_leaves_no_partial_run(pg, db, moment):
    region = _seed_city(db)
    hdr = _admin(db)
    server = Server(db)
    try:
        r = server.client.post("/links/recompute", json={"region": region}, headers=hdr)
        assert r.status_code == 200, r.text
        first = _link_state(db)
        assert len(first["runs"]) == 1 and first["runs"][0][2] and first["current_links"] > 0
        assert first["households_twice"] == 0

        blocker = _engine(db).connect()
        if moment == "mid-swap":
            # Row-lock the current run: the new run and its links get written, then the swap's
            # UPDATE waits on the lock — the transaction is half done when the server dies.
            blocker.execute(sa.text("SELECT 1 FROM link_runs WHERE is_current FOR UPDATE"))
            waiting = "UPDATE link_runs"
        else:
            blocker.execute(sa.text("SELECT pg_advisory_lock(hashtext('gridmap:link_runs'))"))
            waiting = "SELECT pg_advisory_xact_lock"
        outcome = {}

        def call():
            try:
                outcome["response"] = server.client.post("/links/recompute", json={"region": region,
                                                                                   "keep_bonus_m": 0}, headers=hdr)
            except Exception as e:  # the server vanished under the request
                outcome["error"] = e

        t = threading.Thread(target=call)
        t.start()
        dbname = sa.engine.make_url(db).database
        assert pg.wait_until(_blocked_on_lock(pg.admin_url, dbname, waiting), 300), server.output()
        server.kill()
        t.join(120)
        assert "error" in outcome, outcome
        blocker.rollback()
        if moment == "before-write":
            blocker.execute(sa.text("SELECT pg_advisory_unlock_all()"))
        blocker.close()

        # The orphaned backend finishes its statement, finds its client gone and rolls back.
        def settled() -> bool:
            eng = sa.create_engine(pg.admin_url, poolclass=sa.pool.NullPool)
            try:
                with eng.connect() as c:
                    return not c.execute(sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND state <> 'idle' "
                        "AND query ILIKE '%link%' AND pid <> pg_backend_pid()"), {"d": dbname}).scalar()
            finally:
                eng.dispose()

        assert pg.wait_until(settled, 120)
        assert _link_state(db) == first  # the old run, whole; nothing of the new one
    finally:
        server.close()

    # A fresh server recomputes fine afterwards and swaps cleanly.
    server = Server(db)
    try:
        r = server.client.post("/links/recompute", json={"region": region, "keep_bonus_m": 0}, headers=hdr)
        assert r.status_code == 200, r.text
        after = _link_state(db)
        assert [run[2] for run in after["runs"]] == [False, True] and after["households_twice"] == 0
    finally:
        server.close()
