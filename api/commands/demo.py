"""``gridmap demo-web`` — the web pages on the bundled Shanghai Bund sample, with one demo user per role.

Migrates the database, loads the sample (© OpenStreetMap contributors, ODbL) into it, creates (or
resets) a demo account for each role with a fresh random password printed once, and serves the
pages. Meant for a laptop or a training room, never for real data: every demo account covers
every region.
"""

from __future__ import annotations

import secrets

import typer

from api.commands.common import console

#: Demo accounts: username → role (the responder is tied to the sample's first member).
DEMO_USERS = {"demo-leader": "leader", "demo-planner": "planner", "demo-responder": "responder",
              "demo-dispatcher": "dispatcher", "demo-admin": "admin"}
LOAD_ORDER = ("streets", "communities", "grids", "households", "members", "service_centres", "incidents")


def _load_sample(engine) -> None:
    from geodata.sample import SAMPLE_DIR
    from geodata.scenario import load_scenario
    import getpass

    from geodata.store.importer import Actor, import_layer

    layers = load_scenario(SAMPLE_DIR)
    actor = Actor(by=f"os:{getpass.getuser()}", role="admin")  # as `gridmap import` (audited in its transaction)
    for name in LOAD_ORDER:
        if name in layers:
            r = import_layer(engine, name, layers[name], replace=True, actor=actor)
            console.print(f"  {name}: {r.rows:,} rows")


def _demo_accounts(engine) -> dict[str, str]:
    from sqlalchemy import text

    from api.usecases import accounts
    from geodata.store import users

    with engine.connect() as conn:
        member = conn.execute(text("SELECT member_id FROM members ORDER BY member_id LIMIT 1")).scalar()
    existing = {u.username for u in users.list_users(engine)}
    passwords = {}
    for username, role in DEMO_USERS.items():
        password = secrets.token_urlsafe(9)  # 12 characters
        if username in existing:
            accounts.set_password(engine, username, password)
        else:
            accounts.create_user(engine, username, password, role, ["*"],
                              member_id=member if role == "responder" else None)
        passwords[username] = password
    return passwords


def demo_web_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    database_url: str = typer.Option(None, "--database-url", envvar="GRIDMAP_DATABASE_URL",
                                     help="PostGIS URL of a database to fill with the sample."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve the pages after loading."),
):
    """Load the sample, create demo users (passwords printed once) and serve the pages."""
    from api.commands.common import db_url
    from geodata.store import migrate
    from geodata.store.session import make_engine

    database_url = database_url or db_url()
    if migrate.ensure_database(database_url):
        console.print(f"created database {database_url.rsplit('/', 1)[-1]} (with PostGIS)")
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    console.print("Loading the Shanghai Bund sample (© OpenStreetMap contributors, ODbL):")
    _load_sample(engine)
    passwords = _demo_accounts(engine)
    console.print(f"\nOpen http://{host}:{port}/login and log in as (passwords shown once):")
    for username, password in passwords.items():
        typer.echo(f"  {username:<16} {DEMO_USERS[username]:<11} {password}")
    console.print("Background jobs (link recompute) need a worker: `gridmap worker` in another terminal.")
    if serve:
        import uvicorn

        from api.app import create_app

        uvicorn.run(create_app(database_url), host=host, port=port, log_level="warning")
