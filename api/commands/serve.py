"""``gridmap serve`` — run the HTTP API (FastAPI under uvicorn).

The app is built from the settings (``api.settings``) with the command's options laid over them;
nothing is written to the process environment. The address is bound before anything starts, so a taken
port fails at once with a clear message. With ``--workers N`` uvicorn needs an import string: the
settings are handed to the workers in a private ``.env`` file that uvicorn loads.
"""

from __future__ import annotations


import socket
import tempfile
from enum import Enum
from pathlib import Path

import typer

from api.commands.common import console, fail, settings as command_settings


#: Event loops and HTTP parsers uvicorn can run on (uvloop and httptools come with ``uvicorn[standard]``;
#: on the hot paths they take about a third off the framework's cost per request, issue 19).
class Loop(str, Enum):
    uvloop = "uvloop"
    asyncio = "asyncio"


class HttpParser(str, Enum):
    httptools = "httptools"
    h11 = "h11"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; ``OSError`` when the address is taken or not ours."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _check_holidays(holidays: Path | None) -> None:
    if holidays is None:
        return
    from geodata.store.dispatch import read_calendar_file

    try:
        read_calendar_file(holidays)
    except ValueError as e:
        fail(str(e))


def _check_deadline_policy(settings) -> None:
    """Refuse to start with a deadlines file (or holiday file) that cannot be read: every new incident
    would otherwise fail. The message names the file and the entry."""
    from api.usecases.deadlines import deadline_policy

    try:
        deadline_policy(settings)
    except (ValueError, OSError) as e:
        fail(f"deadline rules not usable: {e}")


def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    database_url: str = typer.Option(None, "--database-url",
                                     help="PostGIS URL (default: GRIDMAP_DATABASE_URL or the local default)."),
    holidays: Path = typer.Option(None, "--holidays", exists=True, dir_okay=False,
                                  help="Holiday calendar file (YYYY-MM-DD[,holiday|workday] per line) for "
                                       "3-working-day deadlines (default: GRIDMAP_HOLIDAYS)."),
    workers: int = typer.Option(1, "--workers", min=1, max=64,
                                help="Worker processes. The hot paths run in the event loop: on 2 cores shared with "
                                     "PostgreSQL one worker measured best (bench/dispatch.py); add one per extra core."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level (access log off below info)."),
    loop: Loop = typer.Option(Loop.uvloop, "--loop", help="Event loop: uvloop (fast, the default) or asyncio."),
    http: HttpParser = typer.Option(HttpParser.httptools, "--http",
                                    help="HTTP parser: httptools (fast, the default) or h11 (pure Python)."),
):
    """Serve the API (docs at /docs, database reachability at /health)."""
    import uvicorn

    overrides = {k: v for k, v in {"database_url": database_url,
                                   "holidays": holidays.resolve() if holidays else None}.items() if v is not None}
    base = command_settings()
    if "gc_freeze" not in base.model_fields_set:  # on for a server unless the deployment says otherwise
        overrides["gc_freeze"] = True
    settings = base.model_copy(update=overrides)
    _check_holidays(settings.holidays)
    _check_deadline_policy(settings)
    try:
        sock = bind(host, port)
    except OSError as e:
        fail(f"cannot listen on {host}:{port}: {e.strerror or e} (is another server using the port? "
             "choose another with --port)")
    options = dict(log_level=log_level, access_log=log_level in ("debug", "trace", "info"), loop=loop.value, http=http.value)
    console.print(f"gridmap API on http://{host}:{port}  (docs: /docs, health: /health)")
    if workers == 1:
        from api.app import create_app

        server = uvicorn.Server(uvicorn.Config(create_app(settings), host=host, port=port, **options))
        server.run(sockets=[sock])
        return
    sock.close()  # uvicorn binds again for its workers, right away
    from api.settings import to_env_file

    with tempfile.TemporaryDirectory(prefix="gridmap-serve-") as folder:
        env_file = to_env_file(settings, Path(folder) / "settings.env")
        uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers,
                    env_file=str(env_file), **options)
