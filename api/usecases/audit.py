"""Use case helper: who a write is audited as (``audit_log``: ids only, never personal data).

Every write of every face goes through a use case that records one ``audit_log`` row in the write's own
transaction (``geodata.store.audited.audited``). Staff are named by their token id, role and member;
residents (``/report``, 评单 by follow link) by the role ``resident`` alone — never their phone or its hash.
"""

from __future__ import annotations

from geodata.store.audited import RESIDENT, audited

__all__ = ["RESIDENT", "audited", "staff"]


def staff(principal) -> dict:
    """The audit columns of a logged-in caller (``api.auth.Principal``): token id (None for a login
    session), role and member."""
    return {"token_id": principal.token_id or None, "role": principal.role, "member_id": principal.member_id}
