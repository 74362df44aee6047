"""The ``gridmap`` command line (Typer + Rich). Each command lives in ``api/commands/<name>.py``."""

from __future__ import annotations

import sys

import typer

from api.commands import data as data_cmd
from api.commands import db as db_cmd
from api.commands import plan as plan_cmd

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
app.add_typer(db_cmd.db_app, name="db")
# --- end REGISTER --------------------------------------------------------------------------------


def main() -> None:
    """Console-script entry point: bad input ends with a clear message and exit code 2, not a traceback."""
    from geodata.errors import InputError
    from api.commands.common import console

    try:
        app()
    except InputError as e:
        console.print(f"[bold red]Input error[/]\n{e}", highlight=False, markup=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
