"""``gridmap user …`` against the real PostGIS test database: stdin passwords, argon2 hashes, refusals."""

from __future__ import annotations

import sqlalchemy as sa
from typer.testing import CliRunner

from api.cli import app
from geodata.store import users

GOOD = "long-enough-pw-1"


def _run(db_url, args, stdin=""):
    return CliRunner().invoke(app, ["user", *args], input=stdin, env={"GRIDMAP_DATABASE_URL": db_url})


def test_user_create_list_password_disable(engine, db_url):
    r = _run(db_url, ["create", "--username", "li", "--role", "leader", "--region", "S1,C2", "--password-stdin"],
             GOOD + "\n")
    assert r.exit_code == 0, r.output
    assert GOOD not in r.output
    with engine.connect() as c:
        stored = c.execute(sa.text("SELECT password_hash, regions FROM users WHERE username = 'li'")).one()
    assert stored.password_hash.startswith("$argon2") and GOOD not in stored.password_hash
    assert stored.regions == ["C2", "S1"]
    listing = _run(db_url, ["list"])
    assert "li\tleader\tC2,S1" in listing.output and "argon2" not in listing.output
    assert users.authenticate(engine, "li", GOOD) is not None
    assert _run(db_url, ["password", "li", "--password-stdin"], "another-pw-22\n").exit_code == 0
    assert users.authenticate(engine, "li", GOOD) is None
    assert _run(db_url, ["disable", "li"]).exit_code == 0
    assert users.authenticate(engine, "li", "another-pw-22") is None


def test_user_create_refusals_change_nothing(engine, db_url):
    cases = [(["--role", "leader", "--region", "S1"], "short\n", "at least 10"),
             (["--role", "boss", "--region", "S1"], GOOD + "\n", "unknown role"),
             (["--role", "responder", "--region", "C1"], GOOD + "\n", "--member"),
             (["--role", "leader"], GOOD + "\n", "--region is required")]
    for extra, stdin, message in cases:
        r = _run(db_url, ["create", "--username", "wang", *extra, "--password-stdin"], stdin)
        assert r.exit_code == 2 and message in r.output, r.output
    r = _run(db_url, ["create", "--username", "wang", "--role", "leader", "--region", "S1"])
    assert r.exit_code == 2 and "--password-stdin" in r.output
    assert users.list_users(engine) == []
