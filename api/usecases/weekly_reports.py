"""Use case: the weekly report (每周报表) of every street — the leaders' Excel workbook of the last full
week (Monday–Sunday, China dates) written to a folder and recorded in the database.

Run by the weekly job (``api.jobs.weekly_report``) and by ``gridmap report weekly``. Idempotent per
street and week: a street whose report of that week is recorded is skipped, and the database keeps
one row per street and week even when two runs race. The stored workbook is built for a reader
without personal-data rights (members' names masked, ``张*``): a file on disk outlives the rights of
whoever opens it later. No FastAPI or Typer here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from gridmap.dispatch import LOCAL_TZ


@dataclass(frozen=True)
class WeeklyResult:
    """What one run did: the week, and the streets written, skipped (already recorded) and empty."""

    week_start: date
    week_end: date
    written: tuple[str, ...]
    skipped: tuple[str, ...]
    empty: tuple[str, ...]


def last_full_week(today: date) -> tuple[date, date]:
    """Monday and Sunday of the last week that ended before ``today`` (a China date)."""
    this_monday = today - timedelta(days=today.weekday())
    return this_monday - timedelta(days=7), this_monday - timedelta(days=1)


def _reader(engine):
    """The principal the stored reports are built for: every region, no personal-data rights."""
    from api.auth import Principal

    return Principal(token_id=0, role="viewer", regions=["*"], engine=engine)


def write_weekly_reports(engine, folder: Path, *, audit: tuple[Mapping, dict], today: date | None = None,
                         at: datetime | None = None, streets: list[str] | None = None) -> WeeklyResult:
    """Write and record the last full week's workbook of every street (or of ``streets``).

    Files go to ``folder/<street>/<street>-<week_start>.xlsx`` (written to a temporary name, then renamed).
    ``today`` (China date) picks the week; ``at`` is the time the lights and KPIs are taken at (default: now).
    Each stored row comes with its ``weekly_report`` audit row (what ``weekly_reports``, ids: the report id)
    in one transaction, written as ``audit`` = ``(who, detail)`` (the job: role ``system`` and its job id;
    the command line: ``admin``, ``by = "cli"``).
    """

    from geodata.store import reports as store

    at = at or datetime.now(LOCAL_TZ)
    week_start, week_end = last_full_week(today or at.astimezone(LOCAL_TZ).date())
    written, skipped, empty = [], [], []
    for street in streets if streets is not None else store.street_codes(engine):
        if store.has_report(engine, street, week_start):
            skipped.append(street)
            continue
        body = _workbook(engine, street, week_start, week_end, at)
        if body is None:
            empty.append(street)
            continue
        path = _write(Path(folder) / _safe(street) / f"{_safe(street)}-{week_start.isoformat()}.xlsx", body)
        try:
            new = _record(engine, audit, street, (week_start, week_end), path, body)
        except Exception:
            path.unlink(missing_ok=True)  # no row, no file: the next run writes both
            raise
        (written if new is not None else skipped).append(street)
    return WeeklyResult(week_start, week_end, tuple(written), tuple(skipped), tuple(empty))


def _record(engine, audit: tuple[Mapping, dict], street: str, week: tuple[date, date], path: Path,
            body: bytes) -> int | None:
    """The report's row and its audit row in one transaction; None when the week was recorded already."""
    from api.usecases.audit import audited
    from geodata.store import reports as store

    with audited(engine, audit[0], "weekly_report", "weekly_reports") as (tx, entry):
        new = store.record_report(tx, street, week[0], week[1], str(path), len(body), hashlib.sha256(body).hexdigest())
        if new is None:
            entry.nothing_written()
        entry.ids = [str(new)]
        entry.detail = {**audit[1], "street_code": street, "week_start": week[0].isoformat()}
    return new


def _workbook(engine, street: str, week_start: date, week_end: date, at: datetime) -> bytes | None:
    from api.usecases.leader import RegionNotFound, leader_view
    from api.usecases.reports import leader_workbook

    try:
        view = leader_view(engine, _reader(engine), street, at=at, start=week_start, end=week_end)
    except RegionNotFound:
        return None
    return leader_workbook(view, start=week_start, end=week_end, generated_at=at.astimezone(LOCAL_TZ))


def _safe(code: str) -> str:
    """A street code as a file name part (codes are ours, but a path never takes a separator from data)."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in code)


def _write(path: Path, body: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(body)
    tmp.replace(path)
    return path.resolve()


def read_report(row: dict) -> bytes | None:
    """The bytes of a recorded report, or None when the file is gone or no longer the one recorded."""
    path = Path(row["path"])
    if not path.is_file():
        return None
    body = path.read_bytes()
    return body if hashlib.sha256(body).hexdigest() == row["sha256"] else None
