"""Use cases: accounts, tokens and login sessions — each write with its ``audit_log`` row in one transaction.

The command line (``gridmap user …``, ``gridmap token …``) writes as :func:`cli_who`: the role ``admin``
and, in the row's detail, ``by = "cli"`` and the operating-system user who ran it. Login and logout
write as the account itself. Rows name ids only (user id, token id; ``what`` = ``users``, ``api_tokens``
or ``session``): never a password, its hash, a token's text, its hash or its label (a label often names
the person holding the token).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy.engine import Engine

from api.usecases.audit import CLI as CLI_WHO
from api.usecases.audit import cli_detail
from geodata.store import auth as tokens
from geodata.store import users
from geodata.store.audited import AuditEntry, OneTransaction, audited, write_audit


def create_user(engine: Engine, username: str, password: str, role: str, regions: list[str],
                member_id: str | None = None) -> users.UserRecord:
    """Create a web account from the command line (action ``user_create``, ids: the new user id).

    Raises
    ------
    ValueError
        What :func:`geodata.store.users.create_user` refuses; nothing is written.
    """
    with audited(engine, CLI_WHO, "user_create", "users") as (tx, entry):
        rec = users.create_user(tx, username, password, role, regions, member_id=member_id)
        entry.ids = [str(rec.user_id)]
        entry.detail = {**cli_detail(), "role": rec.role, "regions": list(rec.regions), "member_id": rec.member_id}
    return rec


def disable_user(engine: Engine, username: str) -> bool:
    """Disable an account and end its sessions (action ``user_disable``); False when there is none."""
    with audited(engine, CLI_WHO, "user_disable", "users") as (tx, entry):
        uid = users.disable_user(tx, username)
        _name(entry, uid)
    return uid is not None


def set_password(engine: Engine, username: str, password: str) -> bool:
    """Set a new password and end the sessions (action ``user_password``); False when there is no such
    account. Raises ValueError for a password that breaks the rules (nothing written)."""
    with audited(engine, CLI_WHO, "user_password", "users") as (tx, entry):
        uid = users.set_password(tx, username, password)
        _name(entry, uid)
    return uid is not None


def _name(entry, written_id) -> None:
    if written_id is None:
        entry.nothing_written()
    else:
        entry.ids, entry.detail = [str(written_id)], cli_detail()


def create_token(engine: Engine, role: str, regions: list[str], member_id: str | None = None,
                 label: str | None = None) -> tuple[tokens.TokenRecord, str]:
    """Create an API token from the command line (action ``token_create``, ids: the token id); returns
    its record and text (shown once). Raises ValueError as :func:`geodata.store.auth.create_token`."""
    with audited(engine, CLI_WHO, "token_create", "api_tokens") as (tx, entry):
        rec, text = tokens.create_token(tx, role, regions, member_id=member_id, label=label)
        entry.ids = [str(rec.token_id)]
        entry.detail = {**cli_detail(), "role": rec.role, "regions": list(rec.regions), "member_id": rec.member_id}
    return rec, text


def revoke_token(engine: Engine, token_id: int) -> bool:
    """Revoke a token (action ``token_revoke``); False when there is no live token with that id."""
    with audited(engine, CLI_WHO, "token_revoke", "api_tokens") as (tx, entry):
        done = tokens.revoke_token(tx, token_id)
        _name(entry, token_id if done else None)
    return done


def _account(user: users.UserRecord) -> dict:
    return {"token_id": None, "role": user.role, "member_id": user.member_id}


def log_in(engine: Engine, user: users.UserRecord, max_age_s: int, address: str,
           old_session: str | None = None) -> str:
    """Start a session for ``user`` (ending ``old_session`` if given) with its ``login`` audit row
    (ids: the user id; detail: username and client address) in one transaction; returns the session id."""
    with audited(engine, _account(user), "login", "session") as (tx, entry):
        if old_session:
            users.end_session(tx, old_session)
        session_id = users.start_session(tx, user.user_id, max_age_s)
        entry.ids, entry.detail = [str(user.user_id)], {"username": user.username, "address": address}
    return session_id


def log_out(engine: Engine, user: users.UserRecord, session_id: str, address: str) -> None:
    """End a session with its ``logout`` audit row in one transaction (ids: the user id)."""
    with audited(engine, _account(user), "logout", "session") as (tx, entry):
        users.end_session(tx, session_id)
        entry.ids, entry.detail = [str(user.user_id)], {"username": user.username, "address": address}



def record_failed_login(engine: Engine, username: str, address: str) -> None:
    """Count one wrong password (the login throttle) with its ``login_failed`` audit row in one
    transaction. The row names no account id (none is known for a wrong password), only the username
    typed and the client address; never the password."""
    with engine.begin() as conn:
        users.record_failure(cast(Engine, OneTransaction(conn)), username, address)
        write_audit(conn, {"token_id": None, "role": None, "member_id": None},
                    AuditEntry("login_failed", "session", detail={"username": username, "address": address}))
