"""``gridmap token create|revoke|list`` — bearer tokens for the HTTP API (GRIDMAP_DATABASE_URL)."""

from __future__ import annotations

import typer

from api.commands.common import console, fail
from gridmap.privacy import ROLES

token_app = typer.Typer(help="API tokens: create (printed once), revoke, list.", no_args_is_help=True)


@token_app.command("create")
def create(role: str = typer.Option(..., "--role", help=f"One of: {', '.join(ROLES)}."),
           region: list[str] = typer.Option(None, "--region",
                                            help="Street, community or grid code the token covers (repeat for more; "
                                                 "'*' = every region). Default for admin: '*'."),
           member: str = typer.Option(None, "--member", help="Member id a responder token belongs to."),
           label: str = typer.Option(None, "--label", help="A note to recognise the token by (who holds it).")):
    """Create a token and print it ONCE (only its SHA-256 is stored; audited)."""
    from api.commands.common import db_engine
    from api.usecases import accounts
    from geodata.store import auth as store

    regions = list(region or [])
    if not regions and role == "admin":
        regions = [store.ALL_REGIONS]
    if not regions:
        fail("--region is required (a street, community or grid code; '*' for every region)")
    try:
        rec, token = accounts.create_token(db_engine(), role, regions, member_id=member, label=label)
    except ValueError as e:
        fail(str(e))
    console.print(f"token id {rec.token_id}: role {rec.role}, regions {', '.join(rec.regions)}"
                  + (f", member {rec.member_id}" if rec.member_id else ""))
    console.print("Copy the token now; it is not stored and cannot be shown again:")
    # Plain print (no Rich wrapping) so the token can be piped or copied whole.
    typer.echo(token)


@token_app.command("revoke")
def revoke(token_id: int = typer.Argument(..., help="Id of the token (from create or list).")):
    """Revoke a token; requests with it get 401 from now on (audited)."""
    from api.commands.common import db_engine
    from api.usecases import accounts

    if not accounts.revoke_token(db_engine(), token_id):
        fail(f"no live token with id {token_id}")
    console.print(f"token {token_id} revoked")


@token_app.command("list")
def list_tokens(all_: bool = typer.Option(False, "--all", help="Include revoked tokens.")):
    """List tokens (ids, roles, regions — never the tokens themselves)."""
    from geodata.store import auth as store
    from api.commands.common import db_engine

    for r in store.list_tokens(db_engine(), include_revoked=all_):
        state = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "live"
        typer.echo(f"{r.token_id}\t{r.role}\t{','.join(r.regions)}\t{r.member_id or '-'}\t{r.label or '-'}\t{state}")
