"""``gridmap user create|list|disable|password`` — web accounts (GRIDMAP_DATABASE_URL).

Passwords are read from standard input (``--password-stdin``), never from the command line (which
other users of the machine can see) and never printed or logged.
"""

from __future__ import annotations

import sys

import typer

from api.commands.common import console, fail
from gridmap.privacy import ROLES

user_app = typer.Typer(help="Web accounts (username + password): create, list, disable, password.",
                       no_args_is_help=True)


def _read_password(password_stdin: bool) -> str:
    if not password_stdin:
        fail("give the password on standard input with --password-stdin "
             "(e.g. `printf '%s' \"$PW\" | gridmap user create … --password-stdin`)")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        fail("no password on standard input")
    return password


@user_app.command("create")
def create(username: str = typer.Option(..., "--username", help="Login name (letters, digits, _ . @ -)."),
           role: str = typer.Option(..., "--role", help=f"One of: {', '.join(ROLES)}."),
           region: str = typer.Option(None, "--region",
                                      help="Street, community or grid codes the user covers, comma-separated "
                                           "('*' = every region). Default for admin: '*'."),
           member: str = typer.Option(None, "--member", help="Member id of a responder."),
           password_stdin: bool = typer.Option(False, "--password-stdin",
                                               help="Read the password (at least 10 characters) from stdin.")):
    """Create a web account with the same role and region scope as a token (audited)."""
    from api.commands.common import db_engine
    from api.usecases import accounts

    regions = [r.strip() for r in (region or "").split(",") if r.strip()]
    if not regions and role == "admin":
        regions = ["*"]
    if not regions:
        fail("--region is required (street, community or grid codes, comma-separated; '*' for every region)")
    password = _read_password(password_stdin)
    try:
        rec = accounts.create_user(db_engine(), username, password, role, regions, member_id=member)
    except ValueError as e:
        fail(str(e))
    console.print(f"user {rec.username} (id {rec.user_id}): role {rec.role}, regions {', '.join(rec.regions)}"
                  + (f", member {rec.member_id}" if rec.member_id else ""))


@user_app.command("list")
def list_users():
    """List accounts (no passwords): username, role, regions, member, state."""
    from geodata.store import users
    from api.commands.common import db_engine

    for u in users.list_users(db_engine()):
        state = f"disabled {u.disabled_at:%Y-%m-%d %H:%M}" if u.disabled_at else "active"
        typer.echo(f"{u.username}\t{u.role}\t{','.join(u.regions)}\t{u.member_id or '-'}\t{state}")


@user_app.command("disable")
def disable(username: str = typer.Argument(..., help="The account to disable (its sessions end at once).")):
    """Disable an account; its open sessions end now (audited)."""
    from api.commands.common import db_engine
    from api.usecases import accounts

    if not accounts.disable_user(db_engine(), username):
        fail(f"no enabled user {username!r}")
    console.print(f"user {username} disabled")


@user_app.command("password")
def password(username: str = typer.Argument(..., help="The account whose password changes."),
             password_stdin: bool = typer.Option(False, "--password-stdin",
                                                 help="Read the new password from stdin.")):
    """Set a new password (its open sessions end; audited)."""
    from api.commands.common import db_engine
    from api.usecases import accounts

    new_password = _read_password(password_stdin)
    try:
        ok = accounts.set_password(db_engine(), username, new_password)
    except ValueError as e:
        fail(str(e))
    if not ok:
        fail(f"no user {username!r}")
    console.print(f"password of {username} changed; their sessions were ended")
