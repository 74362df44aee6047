"""The ``gridmap`` command line (Typer + Rich). Each command lives in ``api/commands/<name>.py``."""

from __future__ import annotations

import sys

import typer

from api.commands import calendar as calendar_cmd
from api.commands import data as data_cmd
from api.commands import db as db_cmd
from api.commands import demo as demo_cmd
from api.commands import export as export_cmd
from api.commands import gaps as gaps_cmd
from api.commands import link as link_cmd
from api.commands import maps as maps_cmd
from api.commands import nearest as nearest_cmd
from api.commands import plan as plan_cmd
from api.commands import posts as posts_cmd
from api.commands import redraw as redraw_cmd
from api.commands import report as report_cmd
from api.commands import serve as serve_cmd
from api.commands import token as token_cmd
from api.commands import user as user_cmd
from api.commands import worker as worker_cmd

app = typer.Typer(
    name="gridmap",
    help="Grid management for 网格党支部 work: 包片联户, coverage gaps, dispatch, grid redraw, maps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# --- REGISTER: one line per command -------------------------------------------------------------
app.command("plan")(plan_cmd.plan_command)
app.command("synth")(data_cmd.synth_command)
app.command("import")(data_cmd.import_command)
app.command("validate")(data_cmd.validate_command)
app.command("sample")(data_cmd.sample_command)
app.command("export")(export_cmd.export_command)
app.command("link")(link_cmd.link_command)
app.command("gaps")(gaps_cmd.gaps_command)
app.command("sites")(gaps_cmd.sites_command)
app.command("redraw")(redraw_cmd.redraw_command)
app.command("map")(maps_cmd.map_command)
app.command("nearest")(nearest_cmd.nearest_command)
app.command("serve")(serve_cmd.serve_command)
app.command("worker")(worker_cmd.worker_command)
app.command("demo-web")(demo_cmd.demo_web_command)
app.add_typer(db_cmd.db_app, name="db")
app.add_typer(token_cmd.token_app, name="token")
app.add_typer(user_cmd.user_app, name="user")
app.add_typer(posts_cmd.posts_app, name="posts")
app.add_typer(calendar_cmd.calendar_app, name="calendar")
app.add_typer(report_cmd.report_app, name="report")
# --- end REGISTER --------------------------------------------------------------------------------


def main() -> None:
    """Console-script entry point: bad input ends with a clear message and exit code 2, not a traceback."""
    from sqlalchemy.exc import OperationalError

    from geodata.errors import InputError
    from api.commands.common import console

    try:
        app()
    except InputError as e:
        console.print("[bold red]Input error[/]", markup=True)
        # One problem a line, never wrapped or read as markup: users copy these lines into Excel.
        console.print(str(e), markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except OperationalError as e:  # server down or unreachable: a message, not a traceback
        reason = str(e.orig or e).strip().splitlines()[0]
        console.print(f"[bold red]Database unavailable[/] ({reason}). Retry when it is back.",
                      highlight=False, markup=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
