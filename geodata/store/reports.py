"""The weekly reports (每周报表) kept in PostGIS: which street's workbook of which week lies where.

The files themselves live in a folder the service is configured with; a row records the path, size
and SHA-256 so a download can refuse a file changed on disk. One row per street, week and format
(``UNIQUE``): recording the same week twice keeps the first.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

from sqlalchemy import text
from sqlalchemy.engine import Engine

_COLUMNS = "report_id, street_code, week_start, week_end, format, path, bytes, sha256, created_at"


def street_codes(engine: Engine) -> list[str]:
    """Every street (街道) code in the store, in order."""
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT code FROM streets ORDER BY code"))]


def has_report(engine: Engine, street_code: str, week_start: date, fmt: str = "xlsx") -> bool:
    """Whether the street's report of the week starting ``week_start`` is recorded."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT 1 FROM weekly_reports WHERE street_code = :s AND week_start = :w "
                                 "AND format = :f"), {"s": street_code, "w": week_start, "f": fmt}).first() is not None


def record_report(engine: Engine, street_code: str, week_start: date, week_end: date, path: str, nbytes: int,
                  sha256: str, fmt: str = "xlsx") -> int | None:
    """Record a written report; returns its id, or None when that street and week was already recorded."""
    with engine.begin() as conn:
        return conn.execute(text(
            "INSERT INTO weekly_reports (street_code, week_start, week_end, format, path, bytes, sha256) "
            "VALUES (:s, :w0, :w1, :f, :p, :n, :h) ON CONFLICT ON CONSTRAINT uq_weekly_reports_week DO NOTHING "
            "RETURNING report_id"),
            {"s": street_code, "w0": week_start, "w1": week_end, "f": fmt, "p": path, "n": int(nbytes),
             "h": sha256}).scalar()


def list_reports(engine: Engine, street_codes: Collection[str], limit: int = 12) -> list[dict]:
    """The latest ``limit`` reports of each of the given streets, newest week first."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            f"SELECT {_COLUMNS} FROM (SELECT *, row_number() OVER (PARTITION BY street_code "
            "ORDER BY week_start DESC) AS k FROM weekly_reports WHERE street_code = ANY(:s)) r "
            "WHERE k <= :n ORDER BY week_start DESC, street_code"), {"s": sorted(street_codes), "n": int(limit)})
        return [dict(r._mapping) for r in rows]


def get_report(engine: Engine, report_id: int) -> dict | None:
    """One recorded report, or None."""
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {_COLUMNS} FROM weekly_reports WHERE report_id = :id"),
                           {"id": int(report_id)}).first()
        return dict(row._mapping) if row else None
