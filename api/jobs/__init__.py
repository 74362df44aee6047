"""Background jobs on a PostgreSQL-backed queue (procrastinate; schema from migration ``0005_web``).

Long work — recomputing the 包片联户 links of a region today; redrawing a community and city reports
later — is queued by the pages (:func:`enqueue_recompute`) and done by ``gridmap worker``
(:func:`run_worker`). Jobs live in ``procrastinate_jobs``, so none is lost when a worker or the
service restarts; a job whose worker died is handed back to the queue by the next live worker
(:func:`retry_stalled_jobs`). Jobs on the same region carry the same procrastinate ``lock`` (never
two at once) and ``queueing_lock`` (a second one is refused while one waits). What a person sees
about a job is kept in ``job_progress`` (``geodata.store.jobs``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from functools import lru_cache

import procrastinate
from procrastinate import exceptions as pq_exceptions
from sqlalchemy.engine import make_url

from geodata.store import jobs as progress
from geodata.store.audited import account, audited
from geodata.store.session import database_url, make_engine

logger = logging.getLogger(__name__)

QUEUE = "gridmap"
RECOMPUTE_TASK = "recompute_links"
RECOMPUTE_STEPS = 3


class RegionBusy(Exception):
    """A job on this region is already waiting in the queue."""


def conninfo(url: str | None = None) -> str:
    """The libpq connection string (``postgresql://…``) of a SQLAlchemy URL, for procrastinate."""
    sa_url = make_url(database_url(url))
    return sa_url.set(drivername="postgresql").render_as_string(hide_password=False)


def region_lock(region: str) -> str:
    """The procrastinate lock shared by every job on ``region``."""
    return f"region:{region}"


@lru_cache(maxsize=4)
def _deferring_app(url: str) -> procrastinate.App:
    # A small synchronous pool: pages defer jobs from FastAPI's worker threads.
    app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=conninfo(url), min_size=1,
                                                                         max_size=2))
    return app.open()


def enqueue_recompute(url: str, region: str, requested_by: str, who: Mapping | None = None, **params) -> int:
    """Queue a recompute of ``region``'s links; returns the job id.

    Parameters
    ----------
    url : str
        Database URL of the store (and of the queue).
    who : Mapping, optional
        Who queues it, for the audit row (``token_id``, ``role``, ``member_id``).
    params
        ``min_links``, ``max_links``, ``max_distance_m`` (metres) … passed to
        ``geodata.store.links.recompute``.

    Raises
    ------
    RegionBusy
        A job on the same region is already queued.
    """
    app = _deferring_app(database_url(url))
    try:
        job_id = app.configure_task(RECOMPUTE_TASK, queue=QUEUE, lock=region_lock(region),
                                    queueing_lock=region_lock(region)).defer(region=region, **params)
    except pq_exceptions.AlreadyEnqueued as e:
        raise RegionBusy(region) from e
    record_queued(url, job_id, "recompute_links", region, RECOMPUTE_STEPS, requested_by, who)
    return job_id


def record_queued(url: str, job_id: int, kind: str, region: str, steps: int, requested_by: str,  # noqa: PLR0913
                  who: Mapping | None) -> None:
    """A queued job's progress row and its audit row (action ``job_queued``, what ``jobs``, the job id;
    ``who``: the caller's ``token_id``/``role``/``member_id``, by default the account ``requested_by``)
    in one transaction."""
    engine = make_engine(url)
    with audited(engine, who or account(engine, requested_by), "job_queued", "jobs") as (tx, entry):
        progress.create_progress(tx, job_id, kind, region, steps, requested_by)
        entry.ids = [job_id]
        entry.detail = {"kind": kind, "region": region, "by": requested_by}


def recompute_links_job(context: procrastinate.JobContext, region: str, **params) -> dict:
    """Task body: recompute ``region``'s links (audited as the account that queued it), keeping
    ``job_progress`` up to date; failures are recorded."""
    url = context.additional_context["database_url"]
    engine = make_engine(url)
    job_id = context.job.id
    progress.update_progress(engine, job_id, state="running", step=1, message="正在读取区域数据并计算联户")
    try:
        saved, result = _audited_recompute(engine, job_id, region, params)
    except Exception as e:  # shown plainly on the page, then re-raised so the queue marks it failed
        progress.update_progress(engine, job_id, state="failed", message="计算失败", error=f"{type(e).__name__}: {e}")
        raise
    if saved is None:
        progress.update_progress(engine, job_id, state="failed", step=RECOMPUTE_STEPS, message="计算失败",
                                 error=f"区域 {region} 没有住户（no households in region {region}）")
        return {}
    figures = {"run_id": saved.run_id, "links": saved.links, "superseded_links": saved.superseded_links,
               "households": int(result.summary.get("households", 0) or 0),
               "unlinked": int(result.summary.get("unlinked", 0) or 0)}
    progress.update_progress(engine, job_id, state="done", step=RECOMPUTE_STEPS, message="联户已更新", result=figures)
    return figures


def _audited_recompute(engine, job_id: int, region: str, params: dict):
    """``geodata.store.links.recompute`` with its audit row (``links_recompute``, the run id, the job id in
    the detail) in the run's transaction, as the account that queued the job."""
    from geodata.store.links import recompute

    queued = progress.get_progress(engine, job_id) or {}
    with audited(engine, account(engine, queued.get("requested_by") or ""), "links_recompute", "link_runs") as (tx, entry):
        saved, result = recompute(tx, region, **params)
        if saved is None:
            entry.nothing_written()
        else:
            entry.ids, entry.detail = [saved.run_id], {"region": region, "job_id": job_id, "links": saved.links}
    return saved, result


def worker_app(url: str) -> procrastinate.App:
    """A procrastinate app with gridmap's tasks, for a worker on the database at ``url``."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(url)))
    app.task(name=RECOMPUTE_TASK, queue=QUEUE, pass_context=True)(recompute_links_job)
    from api.jobs import reminders  # deadline reminders every five minutes (issue 15)
    reminders.register(app)
    from api.jobs import redraw  # redraw drafts (issue 16)
    redraw.register(app)
    from api.jobs import weekly_report; weekly_report.register(app)  # noqa: E702 — weekly reports (issue 14)
    return app


async def retry_stalled_jobs(app: procrastinate.App, stalled_after_s: float) -> int:
    """Hand back to the queue every job left ``doing`` by a worker silent for ``stalled_after_s`` seconds."""
    stalled = list(await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after_s))
    for job in stalled:
        logger.warning("job %s was left running by a dead worker; queued again", job.id)
        await app.job_manager.retry_job(job)
    return len(stalled)


async def _reaper(app: procrastinate.App, stalled_after_s: float) -> None:
    while True:
        await retry_stalled_jobs(app, stalled_after_s)
        await asyncio.sleep(max(stalled_after_s / 2, 0.5))


def run_worker(url: str | None = None, concurrency: int = 1, stalled_after_s: float = 30.0) -> None:
    """Run a worker until interrupted: does queued jobs and re-queues those of dead workers.

    Parameters
    ----------
    stalled_after_s : float
        Seconds without a heartbeat after which another worker's running jobs count as abandoned
        (heartbeats are sent every ``stalled_after_s / 3`` seconds).
    """
    url = database_url(url)
    app = worker_app(url)
    heartbeat_s = max(stalled_after_s / 3, 0.2)

    async def main():
        async with app.open_async():
            reaper = asyncio.ensure_future(_reaper(app, stalled_after_s))
            try:
                await app.run_worker_async(queues=[QUEUE], concurrency=concurrency, wait=True,
                                           additional_context={"database_url": url},
                                           update_heartbeat_interval=heartbeat_s,
                                           stalled_worker_timeout=stalled_after_s, fetch_job_polling_interval=1.0)
            finally:
                reaper.cancel()

    asyncio.run(main())
