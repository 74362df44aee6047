"""Use cases: the background jobs' writes, each with its ``audit_log`` row in the write's transaction.

Jobs write as :data:`api.usecases.audit.SYSTEM` (role ``system``) with the task and job id in the
detail. Rows hold ids only (incident, draft, report ids), never names or phones.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine

from api.usecases.audit import SYSTEM, audited, job_detail

REMINDERS_ACTION = "reminders_run"


def run_reminders(engine: Engine, at: datetime, job_id: int | None = None, task: str = "deadline_reminders") -> list[dict]:
    """One reminder run at ``at`` (UTC-aware): marks, notices and escalations with one ``reminders_run``
    audit row (what ``incidents``; ids: every incident noticed or escalated; detail: the escalated ids
    and the number of notices) in the run's single transaction. A run that writes nothing leaves no row.
    Returns the notices written (for the webhook, sent after the commit)."""
    from geodata.store import notices as store

    with audited(engine, SYSTEM, REMINDERS_ACTION, "incidents") as (tx, entry):
        written = store.run_reminders(tx, at)
        if not written:
            entry.nothing_written()
        entry.ids = sorted({n["incident_id"] for n in written})
        entry.detail = {**job_detail(job_id, task), "notices": len(written),
                        "escalated": sorted({n["incident_id"] for n in written if n["kind"] == "escalate"})}
    return written
