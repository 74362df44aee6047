"""A throwaway PostgreSQL 15 server for fault tests: own data folder, own port, stopped and removed after.

The fault tests stop and start this server on purpose; the machine's main cluster is never touched.
``initdb`` refuses to run as root, so as root the server runs as the ``postgres`` user (the data
folder is handed to it). PostGIS comes from the system's ``postgresql-15-postgis-3`` package.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

PG_BIN = Path(os.environ.get("GRIDMAP_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPostgres:
    """One PostgreSQL server in a temporary folder on its own port.

    ``start()`` creates (first time) and starts it; ``stop(mode)`` stops it (``immediate`` is a crash:
    no checkpoint, recovery on the next start); ``remove()`` stops it and deletes the folder.
    """

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="gridmap_pg_"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self._initialised = False

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, *args], capture_output=True, text=True, check=check)

    def start(self) -> None:
        if not self._initialised:
            self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--no-sync", "--locale=C.UTF-8")
            self._initialised = True
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                "-c shared_buffers=32MB -c max_connections=50")
        r = self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60",
                      "start", check=False)
        if r.returncode != 0:
            raise RuntimeError(f"throwaway PostgreSQL did not start: {r.stdout}{r.stderr}\n{self.log_text()}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clean) or ``immediate`` (like a crash)."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def running(self) -> bool:
        r = self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status", check=False)
        return r.returncode == 0

    def remove(self) -> None:
        if self._initialised and self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def create_database(self, name: str) -> str:
        """Create a database with PostGIS; returns its URL."""
        eng = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with eng.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        eng.dispose()
        eng = sa.create_engine(self.url(name), poolclass=sa.pool.NullPool)
        with eng.begin() as c:
            c.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))
        eng.dispose()
        return self.url(name)

    def wait_until(self, predicate, timeout_s: float = 60.0, every_s: float = 0.05) -> bool:
        """Poll ``predicate()`` until true (bounded, so a broken test ends instead of hanging)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(every_s)
        return False
