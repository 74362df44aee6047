"""Background jobs on procrastinate: progress rows, one queued job per region, plain failures, and a
job that survives its worker being killed (a real worker process on the real PostGIS test database)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from api import jobs
from geodata.store.jobs import get_progress
from tests.web.conftest import seed_region

ROOT = Path(__file__).resolve().parents[2]


def _start_worker(db_url: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", "from api.cli import main; main()", "worker",
                             "--database-url", db_url, "--stalled-after", "2"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _wait_for(predicate, what: str, tries: int = 600):
    for _ in range(tries):  # polls, not a wall-clock limit: ~60 s at most before failing
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}")


def _job_status(engine, job_id: int) -> str:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT status::text FROM procrastinate_jobs WHERE id = :i"), {"i": job_id}).scalar()


def test_second_job_on_a_queued_region_is_refused(engine, db_url):
    seed_region(engine)
    first = jobs.enqueue_recompute(db_url, "C1", requested_by="planner1")
    with pytest.raises(jobs.RegionBusy):
        jobs.enqueue_recompute(db_url, "C1", requested_by="planner1")
    assert get_progress(engine, first)["state"] == "queued"
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM procrastinate_jobs")).scalar() == 1
        lock = c.execute(sa.text("SELECT lock FROM procrastinate_jobs")).scalar()
    assert lock == jobs.region_lock("C1")  # the worker never runs two jobs of one region at once


def test_job_survives_its_worker_being_killed_and_failures_are_recorded(engine, db_url):
    seed_region(engine)
    job_id = jobs.enqueue_recompute(db_url, "C1", requested_by="planner1")
    empty_job = jobs.enqueue_recompute(db_url, "G2", requested_by="planner1")  # G2 has no households
    blocker = engine.connect()
    # Hold the lock every link save takes, so the job is caught mid-way when its worker dies.
    blocker.execute(sa.text("SELECT pg_advisory_lock(hashtext('gridmap:link_runs'))"))
    worker = _start_worker(db_url)
    try:
        _wait_for(lambda: get_progress(engine, job_id)["state"] == "running", "the job to start")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        assert _job_status(engine, job_id) == "doing"  # left behind by the dead worker
        blocker.execute(sa.text("SELECT pg_advisory_unlock(hashtext('gridmap:link_runs'))"))
        blocker.close()
        worker = _start_worker(db_url)
        _wait_for(lambda: get_progress(engine, job_id)["state"] == "done", "the job to finish after a restart")
        _wait_for(lambda: get_progress(engine, empty_job)["state"] == "failed", "the empty region's job to fail")
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait()
    done = get_progress(engine, job_id)
    assert done["step"] == done["steps"] and done["result"]["links"] == 3
    assert _job_status(engine, job_id) == "succeeded"
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM link_runs WHERE region = 'C1' AND is_current")).scalar() == 1
    assert "G2" in get_progress(engine, empty_job)["error"]
