"""Writes and their ``audit_log`` row in one transaction.

The store's write functions take an ``Engine`` and open their own transactions (``engine.begin()``),
some of them several in a row. :func:`audited` runs such a function inside one transaction of its own
and appends the audit row on the same connection before committing, so a write is never stored
without its audit row nor an audit row without its write. The function receives a
:class:`OneTransaction` in place of the engine: each ``begin()`` becomes a savepoint (a block that
fails rolls back to it, as its own transaction would have), each ``connect()`` the same connection.

Audit rows hold ids only (ticket, incident, member, notice, job …), never names, phones, ID numbers or
their hashes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy.engine import Connection, Engine

from geodata.store.auth import audit_log

#: Who wrote, for a write nobody logged in made (residents' reports, 评单 by follow link).
RESIDENT = {"token_id": None, "role": "resident", "member_id": None}


class OneTransaction:
    """An ``Engine`` stand-in whose ``begin()`` and ``connect()`` hand out one connection inside the
    caller's transaction (``begin()`` as a savepoint). Of the engine's other attributes only the
    descriptive ones (:data:`PASSED_ON`) are passed on: anything that would open a connection of its own
    (``raw_connection()`` …) would write outside the transaction, so it raises AttributeError instead."""

    #: Engine attributes that open no connection.
    PASSED_ON = frozenset({"url", "dialect", "name", "driver"})

    def __init__(self, conn: Connection):
        self._conn = conn

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self._conn.begin_nested():
            yield self._conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        yield self._conn

    def __getattr__(self, name: str):
        if name not in self.PASSED_ON:
            raise AttributeError(f"{name!r} is not available inside an audited write (it would leave its transaction)")
        return getattr(self._conn.engine, name)


@dataclass
class AuditEntry:
    """The row an :func:`audited` block writes: fill ``ids`` (and ``detail``) once the write is done, or
    call :meth:`nothing_written` when the block found nothing to write (no row then)."""

    action: str
    what: str
    ids: list[str] = field(default_factory=list)
    detail: dict = field(default_factory=dict)
    skipped: bool = False

    def nothing_written(self) -> None:
        """The block wrote nothing (e.g. the object was missing or not the caller's): no audit row."""
        self.skipped = True


def write_audit(conn: Connection, who: Mapping, entry: AuditEntry) -> None:
    """Append ``entry`` for ``who`` (``token_id``, ``role``, ``member_id``) on ``conn``, in its transaction."""
    ids = [str(i) for i in entry.ids]
    conn.execute(audit_log.insert().values(
        token_id=who.get("token_id") or None, role=who.get("role"), member_id=who.get("member_id"),
        action=entry.action, what=entry.what, ids=ids, n_ids=len(ids), detail=entry.detail or None))


@contextmanager
def audited(engine: Engine, who: Mapping, action: str, what: str) -> Iterator[tuple[Engine, AuditEntry]]:
    """One transaction for a write and its audit row.

    Yields ``(tx, entry)``: pass ``tx`` (a :class:`OneTransaction`, typed as the engine it stands in
    for) to the store's write functions as their engine and set
    ``entry.ids`` (and ``entry.detail``) to what was written. The audit row is appended and everything
    committed when the block ends; an exception rolls back the write and writes no row.

    Raises
    ------
    ValueError
        The block named no id and did not say :meth:`AuditEntry.nothing_written` (an audit row must say
    what was written); nothing is committed.
    """
    entry = AuditEntry(action, what)
    with engine.begin() as conn:
        yield cast(Engine, OneTransaction(conn)), entry
        if entry.skipped:
            return
        if not entry.ids:
            raise ValueError(f"audited write {action!r} named no id")
        write_audit(conn, who, entry)


def account(engine: Engine, username: str) -> dict:
    """The audit columns of the login account ``username`` (role and member; no token), for a write
    that names its account only by name (a queued job's ``requested_by``). Role None when there is none."""
    from sqlalchemy import text

    with engine.connect() as conn:
        row = conn.execute(text("SELECT role, member_id FROM users WHERE username = :u"), {"u": username}).first()
    return {"token_id": None, "role": row.role if row else None, "member_id": row.member_id if row else None}
