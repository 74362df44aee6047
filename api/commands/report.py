"""``gridmap report weekly`` — write each street's weekly report (每周报表) now, as the weekly job does.

The report covers the last full week (Monday–Sunday, China dates) before ``--today`` (default: today in
China). Files go to ``--out`` (default: the ``weekly_report_dir`` setting); each is recorded in the
database once — running again for the same week writes nothing new.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

from api.commands.common import console, db_engine, fail, settings

report_app = typer.Typer(help="Leaders' reports (每周报表).", no_args_is_help=True)


@report_app.command("weekly")
def weekly_command(
    out: Path = typer.Option(None, "--out", file_okay=False, help="Folder (default: GRIDMAP_WEEKLY_REPORT_DIR)."),
    today: str = typer.Option(None, "--today", help="Report the last full week before this China date (YYYY-MM-DD)."),
    street: list[str] = typer.Option(None, "--street", help="Only this street code (repeatable)."),
):
    """Write and record the last full week's Excel report of every street (idempotent per street and week)."""
    from api.usecases.audit import CLI, cli_detail
    from api.usecases.weekly_reports import write_weekly_reports

    try:
        day = date.fromisoformat(today) if today else None
    except ValueError:
        fail(f"--today: not a date (YYYY-MM-DD): {today!r}")
    folder = out or settings().weekly_report_dir
    result = write_weekly_reports(db_engine(), folder, today=day, streets=list(street) if street else None,
                                  audit=(CLI, cli_detail()))
    console.print(f"week {result.week_start} – {result.week_end}: {len(result.written)} written, "
                  f"{len(result.skipped)} already recorded, {len(result.empty)} streets without grids "
                  f"(folder {folder})", highlight=False)
