"""The holiday calendar file (法定节假日 and 调休 working days) that deadlines count working days by."""

from __future__ import annotations

from pathlib import Path

from gridmap import dispatch as rules


def read_calendar_file(path) -> rules.WorkCalendar:
    """A holiday calendar file (see ``gridmap.dispatch.parse_calendar``); ValueError names the bad line."""
    p = Path(path)
    return rules.parse_calendar(p.read_text(encoding="utf-8-sig").splitlines(), source=p.name)
