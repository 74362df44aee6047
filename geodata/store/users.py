"""Web accounts, login sessions and the login throttle in PostGIS (tables from migration ``0005_web``).

People log in with a username and password; machine clients keep bearer tokens
(``geodata.store.auth``). A user carries the same role, region codes (street 街道, community 社区 or
grid 网格 codes; ``*`` = everywhere) and, for a responder, member (党员) as a token.

- Passwords are hashed with argon2 (pwdlib); only the hash is stored, and no function here logs or
  returns a password.
- A session id is 32 random bytes (URL-safe text); only its SHA-256 is stored, with a server-side
  expiry, so a copy of the database does not hand out working sessions.
- Wrong passwords are recorded by username and client address (never the password) so that the
  web layer can refuse further tries after five in fifteen minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pwdlib import PasswordHash
from sqlalchemy import text
from sqlalchemy.engine import Engine

from gridmap.privacy import ROLES

#: Shortest password accepted (characters).
MIN_PASSWORD_LENGTH = 10
#: Wrong passwords allowed per username or per address inside :data:`FAILURE_WINDOW` before refusing.
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")

_hasher = PasswordHash.recommended()
# Verified against when the username is unknown, so a wrong username costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("gridmap-no-such-user")


@dataclass(frozen=True)
class UserRecord:
    """A stored account without its password hash."""

    user_id: int
    username: str
    role: str
    regions: tuple[str, ...]
    member_id: str | None
    created_at: datetime | None
    disabled_at: datetime | None


_USER_COLS = "user_id, username, role, regions, member_id, created_at, disabled_at"


def _record(row) -> UserRecord:
    return UserRecord(row.user_id, row.username, row.role, tuple(row.regions), row.member_id, row.created_at,
                      row.disabled_at)


def check_password_rules(password: str) -> None:
    """Raise ValueError when ``password`` is too short (the message never repeats the password)."""
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")


def _check_account(username: str, role: str, regions: list[str], member_id: str | None) -> list[str]:
    if not USERNAME_PATTERN.match(username or ""):
        raise ValueError("username: 1–64 letters, digits or _ . @ - (no spaces)")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    regions = sorted({r.strip() for r in regions if r and r.strip()})
    if not regions:
        raise ValueError("a user needs at least one region code (or '*' for every region)")
    if role == "responder" and not member_id:
        raise ValueError("a responder needs --member (the member id they are)")
    return regions


def create_user(engine: Engine, username: str, password: str, role: str, regions: list[str] | tuple[str, ...],
                member_id: str | None = None) -> UserRecord:
    """Store a new account (argon2 hash of ``password``).

    Raises
    ------
    ValueError
        Bad username, unknown role, no region, responder without member, short password, or the
        username is taken.
    """
    regions = _check_account(username, role, list(regions), member_id)
    check_password_rules(password)
    with engine.begin() as conn:
        if conn.execute(text("SELECT 1 FROM users WHERE username = :u"), {"u": username}).first():
            raise ValueError(f"username {username!r} is taken")
        row = conn.execute(text(
            f"INSERT INTO users (username, password_hash, role, regions, member_id) "
            f"VALUES (:u, :h, :r, :g, :m) RETURNING {_USER_COLS}"),
            {"u": username, "h": _hasher.hash(password), "r": role, "g": regions, "m": member_id}).one()
    return _record(row)


def list_users(engine: Engine) -> list[UserRecord]:
    """Every account (without password hashes), by username."""
    with engine.connect() as conn:
        return [_record(r) for r in conn.execute(text(f"SELECT {_USER_COLS} FROM users ORDER BY username"))]


def get_user(engine: Engine, user_id: int) -> UserRecord | None:
    """The account with this id, or None."""
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {_USER_COLS} FROM users WHERE user_id = :i"), {"i": user_id}).first()
    return _record(row) if row else None


def disable_user(engine: Engine, username: str) -> int | None:
    """Disable an account and end its sessions; returns its user id, None when there is no such enabled
    account."""
    with engine.begin() as conn:
        uid = conn.execute(text("UPDATE users SET disabled_at = now() WHERE username = :u AND disabled_at IS NULL "
                                "RETURNING user_id"), {"u": username}).scalar()
        if uid is None:
            return None
        conn.execute(text("DELETE FROM login_sessions WHERE user_id = :i"), {"i": uid})
    return uid


def set_password(engine: Engine, username: str, password: str) -> int | None:
    """Replace a password and end the account's sessions; returns the user id, None when there is no
    such account."""
    check_password_rules(password)
    with engine.begin() as conn:
        uid = conn.execute(text("UPDATE users SET password_hash = :h WHERE username = :u RETURNING user_id"),
                           {"u": username, "h": _hasher.hash(password)}).scalar()
        if uid is None:
            return None
        conn.execute(text("DELETE FROM login_sessions WHERE user_id = :i"), {"i": uid})
    return uid


def authenticate(engine: Engine, username: str, password: str) -> UserRecord | None:
    """The enabled account whose password matches, else None (same cost for unknown usernames)."""
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {_USER_COLS}, password_hash FROM users WHERE username = :u"),
                           {"u": username}).first()
    if row is None:
        _hasher.verify(password, _DUMMY_HASH)
        return None
    if not _hasher.verify(password, row.password_hash) or row.disabled_at is not None:
        return None
    return _record(row)


# -- login sessions ----------------------------------------------------------------------------
def hash_session(session_id: str) -> str:
    """SHA-256 of a session id, as 64 hex characters (what ``login_sessions.session_hash`` holds)."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def csrf_token_for(session_id: str) -> str:
    """The CSRF token of a session: an HMAC of a fixed label keyed by the session id.

    It needs no storage, changes with every login, and cannot be computed without the session id
    (which only the browser's HttpOnly cookie holds).
    """
    return hmac.new(session_id.encode("utf-8"), b"gridmap-csrf", hashlib.sha256).hexdigest()


def start_session(engine: Engine, user_id: int, max_age_s: int) -> str:
    """Store a new session for ``user_id`` expiring in ``max_age_s`` seconds; returns its id (not stored)."""
    session_id = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM login_sessions WHERE expires_at < now()"))
        conn.execute(text("INSERT INTO login_sessions (session_hash, user_id, expires_at) "
                          "VALUES (:h, :u, now() + make_interval(secs => :s))"),
                     {"h": hash_session(session_id), "u": user_id, "s": max_age_s})
    return session_id


def find_session(engine: Engine, session_id: str) -> UserRecord | None:
    """The enabled account of a live (unexpired) session, or None."""
    if not session_id or len(session_id) > 200:
        return None
    with engine.connect() as conn:
        row = conn.execute(text(
            f"SELECT {', '.join('u.' + c for c in _USER_COLS.split(', '))} FROM login_sessions s "
            "JOIN users u ON u.user_id = s.user_id "
            "WHERE s.session_hash = :h AND s.expires_at > now() AND u.disabled_at IS NULL"),
            {"h": hash_session(session_id)}).first()
    return _record(row) if row else None


def end_session(engine: Engine, session_id: str) -> bool:
    """Delete a session; False when it did not exist."""
    with engine.begin() as conn:
        return conn.execute(text("DELETE FROM login_sessions WHERE session_hash = :h"),
                            {"h": hash_session(session_id)}).rowcount == 1


# -- login throttle ----------------------------------------------------------------------------
def record_failure(engine: Engine, username: str, address: str) -> None:
    """Record one wrong password for ``username`` from ``address`` (no password is stored)."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM login_failures WHERE at < now() - make_interval(secs => :w)"),
                     {"w": FAILURE_WINDOW.total_seconds()})
        conn.execute(text("INSERT INTO login_failures (username, address) VALUES (:u, :a)"),
                     {"u": username[:200], "a": address[:100]})


def throttle_seconds(engine: Engine, username: str, address: str) -> int:
    """Seconds until another try is allowed for this username and address; 0 = allowed now.

    Refused while :data:`MAX_FAILURES` or more wrong passwords for the username, or from the
    address, fall inside the last :data:`FAILURE_WINDOW`; the wait ends when the oldest of the
    newest ``MAX_FAILURES`` leaves the window.
    """
    query = text("SELECT at FROM login_failures WHERE {col} = :v AND at > now() - make_interval(secs => :w) "
                 "ORDER BY at DESC OFFSET :n LIMIT 1")
    wait = 0.0
    now = datetime.now(UTC)
    with engine.connect() as conn:
        for col, value in (("username", username[:200]), ("address", address[:100])):
            fifth = conn.execute(text(query.text.format(col=col)),
                                 {"v": value, "w": FAILURE_WINDOW.total_seconds(), "n": MAX_FAILURES - 1}).scalar()
            if fifth is not None:
                wait = max(wait, (fifth + FAILURE_WINDOW - now).total_seconds())
    return max(int(wait) + 1, 1) if wait > 0 else 0


# -- names for page headers ----------------------------------------------------------------------
def region_names(engine: Engine, codes: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Names of street, community or grid codes (from ``streets``/``communities``/``grids``); the code
    itself where no name is stored. ``*`` is named 全部辖区 (every region)."""
    names = {c: c for c in codes}
    if "*" in names:
        names["*"] = "全部辖区"
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT code, name FROM streets WHERE code = ANY(:c) AND name IS NOT NULL "
            "UNION ALL SELECT code, name FROM communities WHERE code = ANY(:c) AND name IS NOT NULL "
            "UNION ALL SELECT grid_code, name FROM grids WHERE grid_code = ANY(:c) AND name IS NOT NULL"),
            {"c": list(codes)})
        for code, name in rows:
            names[code] = name
    return names
