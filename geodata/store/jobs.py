"""Progress of background jobs (``job_progress``, migration ``0005_web``).

The queue itself is procrastinate's (``procrastinate_jobs``); this table holds what a person needs
to see about a job on a page — kind, region, step of steps, a short Chinese message, the error text
when it failed and a small JSON result (figures only, never personal data). Rows are keyed by the
procrastinate job id, so a reloaded page finds the same job again.
"""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.engine import Engine

#: States a job goes through (``failed`` keeps ``error``).
STATES = ("queued", "running", "done", "failed")
#: Chinese labels of the states, for pages.
STATE_LABELS = {"queued": "排队中", "running": "进行中", "done": "已完成", "failed": "失败"}

_COLS = ("job_id, kind, region, state, step, steps, message, error, result, requested_by, "
         "created_at, updated_at")


def create_progress(engine: Engine, job_id: int, kind: str, region: str, steps: int,
                    requested_by: str | None) -> None:
    """Record a newly queued job (idempotent: a second call for the same id changes nothing)."""
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO job_progress (job_id, kind, region, steps, requested_by, message) "
                          "VALUES (:j, :k, :r, :s, :u, '等待后台处理') ON CONFLICT (job_id) DO NOTHING"),
                     {"j": job_id, "k": kind, "r": region, "s": steps, "u": requested_by})


def update_progress(engine: Engine, job_id: int, *, state: str, step: int | None = None, message: str | None = None,
                    error: str | None = None, result: dict | None = None) -> None:
    """Move a job to ``state`` (one of :data:`STATES`) with its current step, message, error or result."""
    if state not in STATES:
        raise ValueError(f"unknown job state {state!r}; one of {', '.join(STATES)}")
    with engine.begin() as conn:
        conn.execute(text(
            "UPDATE job_progress SET state = :st, step = COALESCE(:step, step), message = COALESCE(:msg, message), "
            "error = :err, result = COALESCE(CAST(:res AS JSONB), result), updated_at = now() WHERE job_id = :j"),
            {"j": job_id, "st": state, "step": step, "msg": message, "err": error,
             "res": json.dumps(result) if result is not None else None})


def get_progress(engine: Engine, job_id: int) -> dict | None:
    """One job's progress row as a dict, or None."""
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {_COLS} FROM job_progress WHERE job_id = :j"), {"j": job_id}).first()
    return dict(row._mapping) if row else None


def list_progress(engine: Engine, regions: frozenset[str] | None, limit: int = 20) -> list[dict]:
    """The newest jobs, newest first, whose region is one of ``regions`` (None = every region)."""
    where = "" if regions is None else "WHERE region = ANY(:r)"
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {_COLS} FROM job_progress {where} ORDER BY job_id DESC LIMIT :n"),
                            {"r": sorted(regions or ()), "n": limit})
        return [dict(r._mapping) for r in rows]
