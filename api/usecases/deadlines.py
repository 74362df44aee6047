"""Use case: the deadline rules of this deployment — the one place that decides which windows and which
working-day calendar an incident's two clocks (接单 respond, 办结 complete) follow.

Every face that records incidents takes a :class:`DeadlinePolicy` from :func:`deadline_policy`:
staff reports (``POST /incidents``), bulk imports (``gridmap import incidents``), residents' tickets
(``/report``) and Open311 requests. The policy holds the windows of the ``deadlines_file`` setting
and the holiday file of the ``holidays`` setting; the store merges the ``holidays`` table
(``gridmap calendar import``) in when it writes, so all four faces count working days alike.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from gridmap import dispatch as rules
from gridmap.deadlines import COMPLETE, RESPOND, DeadlineRules, Window, rules_from_mapping


@lru_cache(maxsize=8)
def _read_rules(path: str, mtime_ns: int) -> DeadlineRules:
    p = Path(path)
    raw = p.read_bytes()
    try:
        data = json.loads(raw) if p.suffix.lower() == ".json" else tomllib.loads(raw.decode("utf-8-sig"))
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{p.name}: not valid {'JSON' if p.suffix.lower() == '.json' else 'TOML'}: {e}") from None
    return rules_from_mapping(data, source=p.name)


def deadline_rules(path: str | Path | None) -> DeadlineRules:
    """The windows of the ``deadlines_file`` setting (TOML, or JSON when it ends in ``.json``; see
    ``gridmap.deadlines.rules_from_mapping``); the policy defaults when None. Re-read when the file
    changes. Raises ValueError naming the file and the entry that is wrong."""
    if path is None:
        return DeadlineRules()
    p = Path(path)
    return _read_rules(str(p.resolve()), p.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _read_calendar(path: str, mtime_ns: int) -> rules.WorkCalendar:
    from geodata.calendar import read_calendar_file

    return read_calendar_file(path)


def holiday_file(path: str | Path | None) -> rules.WorkCalendar | None:
    """The calendar of the ``holidays`` setting (a file of ``YYYY-MM-DD[,holiday|workday]`` lines),
    re-read when it changes; None without one. Raises ValueError naming the bad line."""
    if not path:
        return None
    p = Path(path)
    return _read_calendar(str(p.resolve()), p.stat().st_mtime_ns)


@dataclass(frozen=True)
class DeadlinePolicy:
    """Windows and working-day calendar of one deployment.

    Attributes
    ----------
    rules : the windows per response kind and category (``deadlines_file``; policy defaults without it).
    calendar : the holiday file's calendar (``holidays`` setting), or None; the store adds the
        ``holidays`` table to it when an incident is written.
    """

    rules: DeadlineRules = field(default_factory=DeadlineRules)
    calendar: rules.WorkCalendar | None = None


def deadline_policy(settings) -> DeadlinePolicy:
    """The :class:`DeadlinePolicy` of ``settings`` (``deadlines_file`` and ``holidays``)."""
    return DeadlinePolicy(deadline_rules(settings.deadlines_file), holiday_file(settings.holidays))


def window_text(window: Window) -> str:
    """A window in Chinese: ``4 小时`` or ``3 个工作日``."""
    if window.working_days is not None:
        return f"{window.working_days} 个工作日"
    hours = float(window.hours or 0)
    return f"{hours:g} 小时"


def category_windows_text(policy: DeadlinePolicy, category: str, level: int | None = None) -> str:
    """The two clocks of ``category`` in words, e.g. ``接单 4 小时内，办结 3 个工作日内``."""
    kind = rules.response_kind(category, level)
    respond = policy.rules.window(RESPOND, category, kind)
    complete = policy.rules.window(COMPLETE, category, kind)
    return f"接单 {window_text(respond)}内，办结 {window_text(complete)}内"


def due_text(inc: dict) -> str:
    """An incident's two deadlines in China time, e.g. ``接单时限 2024-05-10 14:00，办结时限 …（北京时间）``."""
    parts = [f"{label} {rules.to_local(inc[key]):%Y-%m-%d %H:%M}"
             for label, key in (("接单时限", "respond_due_at"), ("办结时限", "deadline_at")) if inc.get(key)]
    return "，".join(parts) + "（北京时间）" if parts else ""


def import_calendar(engine, path: str | Path) -> dict:
    """Load a holiday calendar file (``YYYY-MM-DD[,holiday|workday][,name]`` per line) into the
    ``holidays`` table, all or nothing: the whole file is read and checked before one transaction
    writes it with its audit row (``calendar_import``, what ``holidays``, ids: the dates, written as the
    command line — the only face that imports a calendar). Returns the counts of holidays and make-up
    working days written."""
    from api.usecases.audit import CLI, audited, cli_detail
    from geodata.calendar import read_calendar_file
    from geodata.store.holidays import save_calendar

    calendar = read_calendar_file(path)
    with audited(engine, CLI, "calendar_import", "holidays") as (tx, entry):
        written = save_calendar(tx, calendar)
        entry.ids = sorted(d.isoformat() for d in (*calendar.holidays, *calendar.workdays))
        entry.detail = {**cli_detail(), "file": Path(path).name, "holidays": len(calendar.holidays),
                        "workdays": len(calendar.workdays)}
        if not written:
            entry.nothing_written()
    return {"holidays": len(calendar.holidays), "workdays": len(calendar.workdays), "written": written}


__all__ = ["DeadlinePolicy", "deadline_policy", "deadline_rules", "holiday_file", "window_text",
           "category_windows_text", "due_text", "import_calendar"]
