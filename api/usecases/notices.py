"""Use case: the dispatchers' notices (站内提醒) that the reminder job writes for a region — listed unread
first, opened with their incident, marked read (audited). No FastAPI here.

A notice is the caller's when its region (the grid, community or street it was addressed to) lies
inside the caller's regions; anything else reads as missing. Notices hold no personal data (incident
number, category, deadline), so reading them is not a personal-data read; marking one read is a write
and leaves one audit-log row. Times are shown in China time (UTC+8).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from geodata.store import incidents as incident_store
from geodata.store import notices as store
from gridmap import dispatch as rules
from gridmap.deadlines import CLOCK_LABELS, incident_lights

#: Roles whose page this is (admin too): the dispatchers, and leaders who watch the same deadlines.
NOTICE_ROLES = ("dispatcher", "leader")
PAGE_SIZE = 20
#: 红黄绿灯 in words (the page never shows a colour alone).
LIGHT_WORDS = {"red": "红灯 · 已超时", "yellow": "黄灯 · 即将超时", "green": "绿灯 · 正常"}
KIND_WORDS = {"yellow": "黄灯提醒", "red": "红灯提醒", "escalate": "超时升级（吹哨报到）"}
STATUS_WORDS = {"reported": "待派单/待接单", "assigned": "已派单，待接受", "accepted": "处置中", "closed": "已办结",
                "rated": "已评价"}
LEVEL_WORDS = {"grid": "网格", "community": "社区", "street": "街道"}
ACTION_WORDS = {"report": "上报", "import": "导入", "assign": "派单", "accept": "接受", "claim": "接单", "note": "处置进展",
                "close": "办结", "rate": "评价", "escalate": "升级（吹哨报到）"}


@dataclass
class NoticePage:
    """One page of a region's notices: ``items`` (see :func:`notice_view`), counts and page numbers (from 1)."""

    items: list[dict]
    total: int
    unread: int
    page: int
    pages: int


def region_codes(principal) -> frozenset[str] | None:
    """Every street, community and grid code inside the caller's regions; None for ``*``."""
    if principal.everywhere:
        return None
    scope = principal.scope()
    return scope.streets | scope.communities | scope.grids


def named(name: str | None, code: str | None) -> str:
    """``第一网格（G1）``: a name beside its code (the code alone when there is no name)."""
    if not code:
        return "—"
    return f"{name}（{code}）" if name and name != code else code


def notice_view(row: dict, at: datetime) -> dict:
    """A notice row with the words the page shows: the notice's light, the incident's lights now,
    status, grid/community/street names beside codes, the addressed region."""
    light = rules.RED if row["kind"] == "escalate" else row["kind"]
    lights = incident_lights(row, at) if row.get("reported_at") else {}
    now = {clock: LIGHT_WORDS.get(lights.get(f"{clock}_light") or "", "无时限") for clock in CLOCK_LABELS}
    return {**row, "light": light, "light_words": LIGHT_WORDS.get(light, ""),
            "kind_words": KIND_WORDS.get(row["kind"], row["kind"]),
            "status_words": STATUS_WORDS.get(row.get("status") or "", row.get("status") or "—"),
            "grid_label": named(row.get("grid_name"), row.get("grid_code")),
            "community_label": named(row.get("community_name"), row.get("community_code")),
            "street_label": named(row.get("street_name"), row.get("street_code")),
            "region_label": named(row.get("region_name"), row.get("region_code")),
            "level_words": LEVEL_WORDS.get(row.get("escalation_level") or "grid", ""),
            "respond_now": now.get("respond", "无时限"), "complete_now": now.get("complete", "无时限")}


def notices_page(engine: Engine, principal, page: int = 1, at: datetime | None = None) -> NoticePage:
    """Page ``page`` (from 1; past the end: the last page) of the notices of the caller's regions."""
    codes = region_codes(principal)
    at = at or datetime.now(UTC)
    page = max(1, int(page))
    rows, total, unread = store.region_notice_page(engine, codes, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    pages = max(1, -(-total // PAGE_SIZE))
    if page > pages:
        page = pages
        rows, total, unread = store.region_notice_page(engine, codes, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    return NoticePage([notice_view(r, at) for r in rows], total, unread, page, pages)


def open_notice(engine: Engine, principal, notice_id: int, at: datetime | None = None) -> dict | None:
    """The notice with its incident's trail (``steps``), or None when missing or not the caller's."""
    row = store.region_notice(engine, notice_id, region_codes(principal))
    if row is None:
        return None
    view = notice_view(row, at or datetime.now(UTC))
    events = incident_store.incident_events(engine, row["incident_id"]) if row.get("incident_id") else []
    view["steps"] = [step_view(e) for e in events]
    return view


def step_view(event: dict) -> dict:
    """One step of the incident's trail in words: what happened, who (member id), the new status when it changed."""
    what = ACTION_WORDS.get(event["action"], event["action"])
    to_level = (event.get("detail") or {}).get("to") if event["action"] == "escalate" else None
    if to_level in LEVEL_WORDS:
        what = f"升级到{LEVEL_WORDS[to_level]}协调（吹哨报到）"
    changed = event["to_status"] and event["to_status"] != event.get("from_status")
    return {"at": event["at"], "what": what, "member_id": event["member_id"],
            "to": STATUS_WORDS.get(event["to_status"], event["to_status"]) if changed else None}


def mark_read(engine: Engine, principal, notice_id: int, by: str, at: datetime | None = None) -> dict | None:
    """Mark the caller's notice read (audited, action ``notice_read``; ``by`` names the account,
    e.g. ``web:disp1``). None, and nothing written, when missing or not the caller's."""
    audit = {"token_id": principal.token_id or None, "role": principal.role, "member_id": principal.member_id,
             "detail": {"by": by}}
    return store.mark_region_notice_read(engine, notice_id, region_codes(principal), at or datetime.now(UTC), audit)
