"""Background job: redraw one community as a draft (网格调整草案), with progress a planner can follow.

Queued by the redraw page (:func:`enqueue_redraw`) on the same region lock as every other job of that
community (never two at once; a second one is refused while one waits), done by ``gridmap worker``.
The progress row (``job_progress``, kind ``redraw``) ends ``done`` with ``{"draft_id": …}`` or
``failed`` with the error in plain words.
"""

from __future__ import annotations

from collections.abc import Mapping

import procrastinate
from procrastinate import exceptions as pq_exceptions

from geodata.store import jobs as progress
from geodata.store.session import database_url, make_engine

REDRAW_TASK = "redraw_community"
REDRAW_KIND = "redraw"
REDRAW_STEPS = 3


def enqueue_redraw(url: str, community_code: str, requested_by: str, *, name: str, locked: list[str],
                   band: list[int] | None, minimal_change: bool, who: Mapping | None = None) -> int:
    """Queue a redraw of ``community_code``; returns the job id. Audited (``job_queued``) as ``who``
    (``token_id``, ``role``, ``member_id``; the role is left empty when not given) in the progress
    row's transaction.

    Raises
    ------
    api.jobs.RegionBusy
        A job on the same community is already queued.
    """
    from api.jobs import QUEUE, RegionBusy, _deferring_app, record_queued, region_lock

    app = _deferring_app(database_url(url))
    try:
        job_id = app.configure_task(REDRAW_TASK, queue=QUEUE, lock=region_lock(community_code),
                                    queueing_lock=region_lock(community_code)).defer(
            community_code=community_code, name=name, requested_by=requested_by, locked=list(locked),
            band=list(band) if band else None, minimal_change=bool(minimal_change))
    except pq_exceptions.AlreadyEnqueued as e:
        raise RegionBusy(community_code) from e
    record_queued(url, job_id, REDRAW_KIND, community_code, REDRAW_STEPS, requested_by, who)
    return job_id


def redraw_job(context: procrastinate.JobContext, community_code: str, name: str, requested_by: str,
               locked: list[str], band: list[int] | None, minimal_change: bool) -> dict:
    """Task body: compute and save the draft (audited ``draft_save`` as role ``system`` with the job id),
    keeping ``job_progress`` up to date; failures are recorded."""
    from api.usecases.audit import SYSTEM, job_detail
    from api.usecases.drafts import DraftControls, create_draft

    engine = make_engine(context.additional_context["database_url"])
    job_id = context.job.id

    def step(n: int, message: str) -> None:
        progress.update_progress(engine, job_id, state="running", step=n, message=message)

    controls = DraftControls(locked=tuple(locked), band=tuple(band) if band else None, minimal_change=minimal_change)
    try:
        draft_id = create_draft(engine, community_code, controls, name=name, created_by=requested_by, on_step=step,
                                audit=(SYSTEM, job_detail(job_id, REDRAW_TASK)))
    except Exception as e:  # shown plainly on the page, then re-raised so the queue marks it failed
        progress.update_progress(engine, job_id, state="failed", message="重新划分失败",
                                 error=f"{type(e).__name__}: {e}")
        raise
    progress.update_progress(engine, job_id, state="done", step=REDRAW_STEPS, message="草案已生成",
                             result={"draft_id": draft_id})
    return {"draft_id": draft_id}


def register(app: procrastinate.App) -> None:
    """Add the redraw task to a worker's app."""
    from api.jobs import QUEUE

    app.task(name=REDRAW_TASK, queue=QUEUE, pass_context=True)(redraw_job)
