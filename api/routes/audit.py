"""``GET /audit`` — the log of unmasked personal-data reads (admins only).

Each entry says which token (role, member) read which records' personal data, and when; the log
holds ids only, never the data itself.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from api.auth import Principal, require_roles
from geodata.store import auth as store

router = APIRouter(tags=["audit"])


class AuditEntry(BaseModel):
    """One audit entry: ``ids`` of the records of kind ``what`` read by ``action`` (e.g. ``pii_read``)."""

    audit_id: int
    at: datetime
    token_id: int | None
    role: str | None
    member_id: str | None
    action: str
    what: str
    ids: list[str]
    n_ids: int
    detail: dict | None = None


@router.get("/audit", response_model=list[AuditEntry])
def list_audit(request: Request,
               since: datetime | None = Query(None, description="Entries at or after this time (ISO 8601)."),
               until: datetime | None = Query(None, description="Entries before this time (ISO 8601)."),
               token_id: int | None = Query(None, ge=1, le=2**63 - 1, description="Only this token's reads."),
               action: str | None = Query(None, max_length=64, description="e.g. pii_read"),
               what: str | None = Query(None, max_length=64, description="Kind of record, e.g. households."),
               record_id: str | None = Query(None, max_length=200, description="Entries that include this record id."),
               limit: int = Query(100, ge=1, le=1000),
               offset: int = Query(0, ge=0, le=10_000_000),
               principal: Principal = Depends(require_roles("admin"))):
    """Audit entries, newest first (admin tokens only)."""
    return store.list_audit(request.app.state.engine, since=since, until=until, token_id=token_id, action=action,
                            what=what, record_id=record_id, limit=limit, offset=offset)
