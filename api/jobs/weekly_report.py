"""The weekly report job (每周报表, issue 14): a procrastinate periodic task that every Monday morning
(China time) writes each street's Excel report of the week just ended to the ``weekly_report_dir``
folder and records it in ``weekly_reports``. Idempotent: a second run of the same week adds nothing.
``gridmap report weekly`` runs the same use case at once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

logger = logging.getLogger(__name__)

WEEKLY_REPORT_TASK = "weekly_reports"
#: Sundays 18:00 UTC = Mondays 02:00 China time: the week (Monday–Sunday, China dates) has ended.
WEEKLY_REPORT_CRON = "0 18 * * 0"


def weekly_report_job(context, timestamp: int) -> dict:
    """Task body of the periodic run (``timestamp``: the schedule's second, from procrastinate)."""
    from api.settings import get_settings
    from api.usecases.audit import SYSTEM, job_detail
    from api.usecases.weekly_reports import write_weekly_reports
    from geodata.store.session import make_engine

    engine = make_engine(context.additional_context["database_url"])
    result = write_weekly_reports(engine, get_settings().weekly_report_dir, at=datetime.fromtimestamp(timestamp, UTC),
                                  audit=(SYSTEM, job_detail(context.job.id, WEEKLY_REPORT_TASK)))
    logger.info("weekly reports of %s: %d written, %d already there", result.week_start, len(result.written),
                len(result.skipped))
    return {"week_start": result.week_start.isoformat(), "written": list(result.written),
            "skipped": list(result.skipped), "empty": list(result.empty)}


def register(app) -> None:
    """Add the periodic weekly report task to a procrastinate ``app`` (``gridmap worker`` runs it)."""
    from api.jobs import QUEUE

    task = app.task(name=WEEKLY_REPORT_TASK, queue=QUEUE, pass_context=True)(weekly_report_job)
    app.periodic(cron=WEEKLY_REPORT_CRON, periodic_id=WEEKLY_REPORT_TASK)(task)
