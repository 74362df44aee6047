"""Use case helper: who a write is audited as (``audit_log``: ids only, never personal data).

Every write of every face goes through a use case that records one ``audit_log`` row in the write's own
transaction (``geodata.store.audited.audited``). Staff are named by their token id, role and member;
residents (``/report``, 评单 by follow link) by the role ``resident`` alone — never their phone or its hash.
"""

from __future__ import annotations

import getpass

from geodata.store.audited import RESIDENT, audited

__all__ = ["CLI", "RESIDENT", "SYSTEM", "audited", "cli_detail", "job_detail", "staff"]

#: Who the command line writes as: the role ``admin`` (the OS user goes in the detail, :func:`cli_detail`).
CLI = {"token_id": None, "role": "admin", "member_id": None}
#: Who a background job writes as (its job id goes in the detail, :func:`job_detail`).
SYSTEM = {"token_id": None, "role": "system", "member_id": None}


def cli_detail() -> dict:
    """The detail of every command-line audit row: ``by = "cli"`` and the operating-system user name."""
    return {"by": "cli", "os_user": getpass.getuser()}


def job_detail(job_id: int | None, task: str) -> dict:
    """The detail of every background job's audit row: the task name and the job id (None when run
    outside the queue, e.g. by hand)."""
    return {"by": "job", "task": task, "job_id": job_id}


def staff(principal) -> dict:
    """The audit columns of a logged-in caller (``api.auth.Principal``): token id (None for a login
    session), role and member."""
    return {"token_id": principal.token_id or None, "role": principal.role, "member_id": principal.member_id}
