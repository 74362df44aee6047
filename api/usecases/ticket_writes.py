"""Use case: the two writes on a public ticket — a new one (a resident's ``/report`` or an Open311 POST)
and the resident's 评单 — each with its ``audit_log`` row in the same transaction.

The audit row names the incident id (ids) and the ticket number (detail), never the phone, its hash, the
description, the address or the rating comment (free text a resident may have put a name in).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from api.usecases.audit import audited
from geodata.store import tickets


def store_ticket(engine, who: Mapping, via: str, *, upload_dir, **fields) -> dict:
    """``geodata.store.tickets.create_ticket`` (``fields`` as it takes them) audited as ``ticket_report``
    (detail: ticket, ``via`` — ``report`` or ``open311`` — category and the number of photos). If the
    transaction fails after the photos were written, their files are removed again.
    Returns ``{"ticket", "follow_key", "incident_id"}``."""
    written: list[str] = []
    try:
        with audited(engine, who, "ticket_report", "incidents") as (tx, entry):
            made = tickets.create_ticket(tx, upload_dir=upload_dir, **fields)
            written = [p["path"] for p in tickets.ticket_photos(tx, made["incident_id"])]
            entry.ids = [made["incident_id"]]
            entry.detail = {"ticket": made["ticket"], "via": via, "category": fields.get("category"),
                            "photos": len(written)}
    except BaseException:
        for rel in written:  # the rows went with the rollback; a file no other ticket shares goes too
            tickets._remove_unshared(engine, Path(upload_dir), rel)
        raise
    return made


def rate_ticket(engine, who: Mapping, incident_id: str, rating: int, comment: str | None) -> dict:
    """群众评单 (``geodata.store.tickets.rate_ticket``) audited as ``ticket_rate`` with the rating (1–5)
    and whether it was flagged; errors (IllegalTransition) pass through with nothing written."""
    with audited(engine, who, "ticket_rate", "incidents") as (tx, entry):
        done = tickets.rate_ticket(tx, incident_id, rating, comment)
        entry.ids = [incident_id]
        entry.detail = {"rating": done["rating"], "flagged": done["flagged"]}
    return done
