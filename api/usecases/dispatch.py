"""Use case: staff report an incident (一键上报) and move it through its life cycle (派单, 接单, 办结, 评单).

The JSON routes (``api/routes/dispatch.py``, ``api/routes/visits.py``) and the responder's page call these
after checking role and region; each write and its ``audit_log`` row (action ``incident_<step>``, what
``incidents``, the incident id) are one transaction. Coordinates WGS84 degrees; distances metres.
"""

from __future__ import annotations

from api.usecases.audit import audited, staff
from geodata.store import incidents


def report_incident(engine, principal, **fields) -> dict:
    """Store a reported incident (``geodata.store.incidents.create_incident`` takes ``fields``: WGS84
    ``lon``/``lat``, category, deadlines …), audited as ``incident_report``. Returns the stored incident."""
    with audited(engine, staff(principal), "incident_report", "incidents") as (tx, entry):
        inc = incidents.create_incident(tx, **fields)
        entry.ids = [inc["incident_id"]]
        entry.detail = {"category": inc["category"], "grid_code": inc["grid_code"]}
    return inc


def act(engine, principal, incident_id: str, action: str, **kw) -> dict:
    """One life-cycle step (``assign``, ``accept``, ``claim``, ``close``, ``rate``; ``kw`` as
    ``geodata.store.incidents.transition`` takes them), audited as ``incident_<action>``. Its errors
    (NotFound, IllegalTransition …) pass through with nothing written."""
    with audited(engine, staff(principal), f"incident_{action}", "incidents") as (tx, entry):
        inc = incidents.transition(tx, incident_id, action, **kw)
        entry.ids = [incident_id]
        entry.detail = _step_detail(inc)
    return inc


def add_note(engine, principal, incident_id: str, note: str, photos: list[dict] | None = None) -> dict:
    """处置进展 by the caller's member on their accepted incident, audited as ``incident_note`` (the note's
    text stays in the incident's history, not in the audit log)."""
    with audited(engine, staff(principal), "incident_note", "incidents") as (tx, entry):
        inc = incidents.add_progress_note(tx, incident_id, principal.member_id, note, photos)
        entry.ids = [incident_id]
        entry.detail = {"photos": len(photos or ())}
    return inc


def _step_detail(inc: dict) -> dict:
    """What the audit row says of the step: the new status and who holds the incident (ids only)."""
    return {"status": inc["status"], "assigned_member_id": inc["assigned_member_id"]}
