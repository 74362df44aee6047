"""``gridmap db upgrade|downgrade|current`` — Alembic migrations of the PostGIS schema."""

from __future__ import annotations

import typer

from api.commands.common import console, db_url

db_app = typer.Typer(help="PostGIS schema migrations (GRIDMAP_DATABASE_URL).", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision (default: newest).")):
    """Upgrade the schema (creates the PostGIS extension when allowed)."""
    from geodata.store import migrate

    migrate.upgrade(db_url(), revision=revision)
    console.print(f"database at revision [bold]{migrate.current(db_url())}[/]", markup=True)


@db_app.command("downgrade")
def downgrade(revision: str = typer.Argument("-1", help="Target revision: -1 (one step, default) or base (drop all).")):
    """Downgrade the schema."""
    from geodata.store import migrate

    migrate.downgrade(db_url(), revision=revision)
    console.print(f"database at revision [bold]{migrate.current(db_url()) or 'base (empty)'}[/]", markup=True)


@db_app.command("current")
def current():
    """Print the schema revision of the database."""
    from geodata.store import migrate

    console.print(migrate.current(db_url()) or "base (empty)")
