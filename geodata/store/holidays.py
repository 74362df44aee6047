"""The ``holidays`` table: the working-day calendar stored in PostGIS beside the incidents."""

from __future__ import annotations

from datetime import date

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from gridmap import dispatch as rules


def load_calendar(conn: Connection) -> rules.WorkCalendar:
    """The calendar stored in the ``holidays`` table."""
    rows = conn.execute(text("SELECT day, kind FROM holidays")).all()
    return rules.WorkCalendar(frozenset(d for d, k in rows if k == "holiday"),
                              frozenset(d for d, k in rows if k == "workday"))


def save_calendar(engine: Engine, calendar: rules.WorkCalendar, names: dict[date, str] | None = None) -> int:
    """Upsert a calendar into the ``holidays`` table; returns the number of days written."""
    names = names or {}
    rows = [{"d": d, "k": "holiday", "n": names.get(d)} for d in sorted(calendar.holidays)]
    rows += [{"d": d, "k": "workday", "n": names.get(d)} for d in sorted(calendar.workdays)]
    if rows:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO holidays (day, kind, name) VALUES (:d, :k, :n) "
                              "ON CONFLICT (day) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name"), rows)
    return len(rows)
