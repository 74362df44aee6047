"""Use case: the deadline windows of this deployment (the ``deadlines_file`` setting) and the holiday
calendar (``gridmap calendar import``). Every face that records incidents takes its windows from here."""

from __future__ import annotations

import json
import tomllib
from functools import lru_cache
from pathlib import Path

from gridmap.deadlines import DeadlineRules, rules_from_mapping


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


def import_calendar(engine, path: str | Path) -> dict:
    """Load a holiday calendar file (``YYYY-MM-DD[,holiday|workday][,name]`` per line) into the
    ``holidays`` table, all or nothing: the whole file is read and checked before one transaction
    writes it. Returns the counts of holidays and make-up working days written."""
    from geodata.calendar import read_calendar_file
    from geodata.store.holidays import save_calendar

    calendar = read_calendar_file(path)
    written = save_calendar(engine, calendar)
    return {"holidays": len(calendar.holidays), "workdays": len(calendar.workdays), "written": written}
