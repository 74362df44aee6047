"""Deadline reminders (issue 15): a procrastinate periodic task that marks incidents whose 接单 or 办结
clock entered yellow or red, writes in-app notices for the holder and the region's dispatchers,
escalates red ones one level (吹哨报到) and, when the ``notify_webhook_url`` setting is given, POSTs
each notice as JSON to that gateway (SMS/WeCom). Idempotent: a second run marks nothing new.
Holders read theirs on ``/responder`` (提醒), the region's dispatchers and leaders on ``/notices`` (提醒通知).
"""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import UTC, datetime

logger = logging.getLogger(__name__)

REMINDERS_TASK = "deadline_reminders"
#: Every five minutes: a clock's yellow phase is hours long, so a notice is at most minutes late.
REMINDERS_CRON = "*/5 * * * *"
WEBHOOK_TIMEOUT_S = 10.0


def post_notices(url: str, notices: list[dict], timeout_s: float = WEBHOOK_TIMEOUT_S) -> int:
    """POST each notice to ``url`` as JSON (ids, kind, message; no personal data); returns how many
    the gateway accepted (2xx). A failing gateway is logged, never undoes the in-app notices."""
    sent = 0
    for notice in notices:
        body = json.dumps({**notice, "created_at": notice["created_at"].isoformat()}, ensure_ascii=False).encode()
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 — the configured URL
                sent += 200 <= response.status < 300
        except OSError as e:
            logger.warning("reminder webhook failed for notice %s: %s", notice["notice_id"], e)
    return sent


def run_reminders(engine, at: datetime | None = None, webhook_url: str | None = None,
                  job_id: int | None = None) -> dict:
    """One reminder run at ``at`` (default now): marks, notices, escalations and their audit row (role
    ``system``, ``job_id`` in the detail) in one transaction, then the webhook."""
    from api.usecases.job_writes import run_reminders as write_reminders

    written = write_reminders(engine, at or datetime.now(UTC), job_id, REMINDERS_TASK)
    sent = post_notices(webhook_url, written) if webhook_url and written else 0
    return {"notices": len(written), "escalated": sum(n["kind"] == "escalate" for n in written), "webhook_sent": sent}


def reminders_job(context, timestamp: int) -> dict:
    """Task body of the periodic run (``timestamp``: the schedule's second, from procrastinate)."""
    from api.settings import get_settings
    from geodata.store.session import make_engine

    engine = make_engine(context.additional_context["database_url"])
    return run_reminders(engine, datetime.fromtimestamp(timestamp, UTC), get_settings().notify_webhook_url,
                         job_id=context.job.id)


def register(app) -> None:
    """Add the periodic reminder task to a procrastinate ``app`` (``gridmap worker`` runs it)."""
    from api.jobs import QUEUE

    task = app.task(name=REMINDERS_TASK, queue=QUEUE, pass_context=True)(reminders_job)
    app.periodic(cron=REMINDERS_CRON, periodic_id=REMINDERS_TASK)(task)
