"""``gridmap calendar import FILE`` — load the holiday calendar (法定节假日, 调休上班) that 3-working-day
deadlines count by into the ``holidays`` table (GRIDMAP_DATABASE_URL).

FILE has one date a line: ``YYYY-MM-DD[,holiday|workday]`` (also 休/放假, 班/调休上班; ``#`` comments and a
``date`` header are skipped). The whole file is checked first; a bad line is named and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import typer

from api.commands.common import console, db_engine, fail

calendar_app = typer.Typer(help="The holiday calendar for working-day deadlines.", no_args_is_help=True)


@calendar_app.command("import")
def import_command(path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                               help="Calendar file: YYYY-MM-DD[,holiday|workday] per line.")):
    """Load a holiday calendar file into the database (dates already there are updated)."""
    from api.usecases.deadlines import import_calendar

    try:
        counts = import_calendar(db_engine(), path)
    except ValueError as e:
        fail(str(e))
    console.print(f"calendar {path.name}: {counts['holidays']} holidays, {counts['workdays']} make-up working days "
                  f"written ({counts['written']} dates)")
