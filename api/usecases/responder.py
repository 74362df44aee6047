"""Use case: a responder (党员, 网格员) on a phone — my households (包片联户) with their visit plan, the
buildings they live in, and checking in a visit (签到走访).

Every face (the ``/responder`` page, the JSON routes) calls these. ``principal`` is the caller's
``api.auth.Principal`` (role, regions, member); it is used through its methods only, so nothing
here depends on FastAPI. Personal data: a responder sees name and phone of their own linked
households (they call and visit them) but never the 身份证号; every unmasked read and every write
is audited (ids only). Coordinates WGS84 degrees; distances metres.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from api.usecases.audit import audited, staff
from geodata.crs import to_wgs84
from geodata.store import auth as auth_store
from geodata.store import visits as visit_store
from geodata.store.links import member_households
from gridmap.metric import haversine_m
from gridmap.privacy import has_pii, mask_id_number, mask_record

#: Households closer than this (metres) with no building in the roster are taken as one building.
SAME_BUILDING_M = 15.0


@dataclass(frozen=True)
class VisitPlan:
    """How often households are visited (走访频次): days between visits per tag (e.g. 独居老人 7), and
    ``default_days`` for households with none of those tags. A household with several tags is
    visited as often as its most frequent one asks."""

    every_days_by_tag: Mapping[str, int] = field(default_factory=lambda: {"独居老人": 7})
    default_days: int = 30

    def days_for(self, tags) -> int:
        """Days between visits for a household with ``tags`` (a list or None)."""
        days = [self.every_days_by_tag[t] for t in (tags or []) if t in self.every_days_by_tag]
        return min(days) if days else self.default_days


def present_for_responder(engine, principal, rows: list[dict]) -> list[dict]:
    """The member's own households as a responder may see them: name and phone unmasked when role
    and region allow (audited, ids only), the 身份证号 always masked for a responder."""
    out, unmasked = [], []
    for row in rows:
        if principal.allows_pii(grid_code=row.get("grid_code")):
            shown = dict(row)
            if has_pii(shown):
                unmasked.append(row["household_id"])
        else:
            shown = mask_record(row)
        if principal.role == "responder":
            shown["id_number"] = mask_id_number(shown.get("id_number"))
        out.append(shown)
    if unmasked:
        auth_store.record_audit(engine, token_id=principal.token_id or None, role=principal.role,
                                member_id=principal.member_id, action="pii_read", what="households", ids=unmasked)
    return out


def with_visit_plan(rows: list[dict], last: Mapping[str, datetime], plan: VisitPlan, now: datetime) -> list[dict]:
    """``rows`` with ``last_visit``, ``next_due`` and ``overdue``, overdue households first (then in
    visiting order). A household never visited is due now."""
    out = []
    for row in rows:
        seen = last.get(str(row["household_id"]))
        due = seen + timedelta(days=plan.days_for(row.get("tags"))) if seen else now
        out.append({**row, "last_visit": seen, "next_due": due, "overdue": due <= now,
                    "every_days": plan.days_for(row.get("tags"))})
    return sorted(out, key=lambda r: (not r["overdue"], r.get("visit_order") is None, r.get("visit_order") or 0))


def my_households(engine, principal, plan: VisitPlan, now: datetime | None = None) -> list[dict]:
    """The caller's linked households with their visit plan, as :func:`present_for_responder` shows them."""
    if principal.member_id is None:
        return []
    rows = member_households(engine, principal.member_id)
    rows = present_for_responder(engine, principal, rows)
    last = visit_store.last_visits(engine, [r["household_id"] for r in rows])
    return with_visit_plan(rows, last, plan, now or datetime.now(UTC))


def address(row: Mapping) -> str:
    """楼栋/单元/室 of a household as one line (``3栋1单元0201室``); "" when the roster has none."""
    parts = [(row.get("building"), "栋"), (row.get("unit"), "单元"), (row.get("room"), "室")]
    return "".join(f"{v}{suffix}" if not str(v).endswith(suffix) else str(v) for v, suffix in parts if v)


def building_groups(rows: list[dict], near_m: float = SAME_BUILDING_M) -> list[dict]:
    """Households grouped by building, so a map draws one marker per building with a numbered list.

    Households sharing a grid and a ``building`` are one building; households without one join the
    first group whose position lies within ``near_m`` metres (they sit in one block on the map).
    Each group: ``lon``/``lat`` (the mean, WGS84), ``label`` and ``households`` (``number`` is the
    household's place in ``rows``, 1-based, as the list on the page numbers them).
    """
    groups: list[dict] = []
    for number, row in enumerate(rows, start=1):
        item = {"number": number, "household_id": row["household_id"], "name": row.get("name"),
                "address": address(row), "lon": float(row["lon"]), "lat": float(row["lat"])}
        group = _find_group(groups, row, item, near_m)
        if group is None:
            group = {"key": (row.get("grid_code"), row.get("building")), "label": _group_label(row), "households": []}
            groups.append(group)
        group["households"].append(item)
    for group in groups:
        group["lon"] = float(np.mean([h["lon"] for h in group["households"]]))
        group["lat"] = float(np.mean([h["lat"] for h in group["households"]]))
        del group["key"]
    return groups


def _group_label(row: Mapping) -> str:
    building = row.get("building")
    return f"{building}{'' if str(building).endswith('栋') else '栋'}" if building else "同一位置"


def _find_group(groups: list[dict], row: Mapping, item: dict, near_m: float) -> dict | None:
    if row.get("building"):
        return next((g for g in groups if g["key"] == (row.get("grid_code"), row.get("building"))), None)
    for g in groups:
        if g["key"][1] is None and any(
                haversine_m(item["lon"], item["lat"], h["lon"], h["lat"]) <= near_m for h in g["households"]):
            return g
    return None


def to_wgs84_point(lon: float, lat: float, coords: str) -> tuple[float, float]:
    """A phone's position in WGS84: browsers give WGS84, Amap-based ones GCJ-02 (``coords``)."""
    x, y = to_wgs84(np.array([lon], dtype=float), np.array([lat], dtype=float), coords)
    return float(np.asarray(x).ravel()[0]), float(np.asarray(y).ravel()[0])


class VisitRefused(ValueError):
    """A check-in refused for bad input (kind, note, photo, position); the text is Chinese, naming the field."""


def check_in(engine, principal, *, household_id: str, kind: str, note: str | None = None,  # noqa: PLR0913 — keyword-only fields of one check-in, as the form sends them
             lon: float | None = None, lat: float | None = None, coords: str = "wgs84",
             accuracy_m: float | None = None, photo: bytes | None = None, upload_dir=None,
             photo_max_bytes: int | None = None, now: datetime | None = None) -> dict:
    """签到走访: record a visit of the caller's member at one of their linked households.

    ``lon``/``lat`` are the phone's position in ``coords`` (``wgs84`` from most browsers, ``gcj02``
    from Amap-based ones), stored in WGS84 with ``accuracy_m`` (metres) as given; more than
    ``geodata.store.visits.FAR_M`` (200 m) from the household is flagged, not refused. ``photo``
    (JPEG/PNG bytes) is checked, stripped of EXIF and stored under ``upload_dir``; if the visit
    cannot be stored the photo is removed again. The write is audited in the same transaction.

    Raises
    ------
    geodata.store.visits.NotLinked
        The household is missing or not the caller's (the same answer; nothing written).
    VisitRefused
        Bad kind, note, position or photo (nothing written).
    """
    from geodata import photos

    if principal.member_id is None:
        raise visit_store.NotLinked(household_id)
    if kind not in visit_store.VISIT_KINDS:
        raise VisitRefused(f"走访方式 kind 只能是 上门(door) 或 电话(phone)，收到 {kind!r}")
    if note and len(note) > visit_store.NOTE_MAX_CHARS:
        raise VisitRefused(f"走访记录 note 超过 {visit_store.NOTE_MAX_CHARS} 字")
    point = _position(lon, lat, coords, accuracy_m)
    stored = None
    if photo:
        try:
            stored = photos.save_photo(photo, upload_dir, max_bytes=photo_max_bytes or photos.MAX_PHOTO_BYTES)
        except photos.PhotoError as e:
            raise VisitRefused(f"照片 photo：{e}") from None
    visit = visit_store.NewVisit(principal.member_id, household_id, now or datetime.now(UTC), kind,
                                 (note or "").strip() or None, *point, accuracy_m,
                                 stored.path if stored else None, stored.sha256 if stored else None)
    try:
        return visit_store.record_visit(engine, visit, audit={"token_id": principal.token_id or None,
                                                              "role": principal.role, "member_id": principal.member_id})
    except BaseException:
        if stored is not None:
            photos.remove_photo(upload_dir, stored)
        raise


def _position(lon, lat, coords: str, accuracy_m) -> tuple[float | None, float | None]:
    """The phone's position in WGS84, or ``(None, None)`` without one; VisitRefused naming the field."""
    from geodata.crs import COORD_SYSTEMS, in_china

    if (lon is None) != (lat is None):
        raise VisitRefused("位置 lon/lat 需同时给出")
    if accuracy_m is not None and not (0 <= accuracy_m < 100_000):
        raise VisitRefused(f"定位精度 accuracy_m 不合理：{accuracy_m}")
    if lon is None:
        return None, None
    if coords not in COORD_SYSTEMS:
        raise VisitRefused(f"坐标系 coords 只能是 {', '.join(COORD_SYSTEMS)}")
    if not (in_china(lon, lat)):
        raise VisitRefused(f"位置 lon={lon}, lat={lat} 不在中国境内（经纬度是否写反？）")
    return to_wgs84_point(lon, lat, coords)


def visible_visits(engine, principal, member_id: str, limit: int = 50) -> list[dict]:
    """A member's latest visits for the caller: the member themself and dispatchers/leaders whose
    role and region allow personal data see the note (audited); anyone else gets dates and counts
    with the note left out."""
    rows = visit_store.member_visits(engine, member_id, limit)
    shown = []
    for row in rows:
        own = principal.member_id == member_id
        if not (own or principal.allows_pii(grid_code=row["grid_code"])):
            row = {**row, "note": None}
        shown.append(row)
    noted = [r["household_id"] for r in shown if r["note"] and principal.member_id != member_id]
    if noted:
        auth_store.record_audit(engine, token_id=principal.token_id or None, role=principal.role,
                                member_id=principal.member_id, action="pii_read", what="visits", ids=noted)
    return shown


# -- incidents a responder takes (附近事件, 接单, 处置, 办结) ----------------------------------------------

class IncidentRefused(ValueError):
    """A refused incident action with a Chinese reason (already taken, wrong state, bad photo)."""


def nearby_incidents(engine, principal, lon=None, lat=None, coords: str = "wgs84", radius_m: float = 1000.0,
                     now: datetime | None = None) -> list[dict]:
    """附近事件: unassigned open incidents within ``radius_m`` metres of the phone (``coords``) or of
    the caller's grid, matching their skills, nearest first, each with its light and ``left`` (time
    to the deadline; negative when overdue)."""
    from geodata.store import incidents

    if principal.member_id is None:
        return []
    if lon is not None and lat is not None:
        lon, lat = _position(lon, lat, coords, None)
    now = now or datetime.now(UTC)
    rows = incidents.nearby_open_incidents(engine, principal.member_id, lon, lat, radius_m=radius_m, at=now)
    return [with_time_left(r, now) for r in rows]


def my_open_incidents(engine, principal, now: datetime | None = None) -> list[dict]:
    """The caller's open incidents (assigned or accepted), nearest first from home, with ``left``."""
    from geodata.store import incidents

    if principal.member_id is None:
        return []
    now = now or datetime.now(UTC)
    rows = incidents.member_incidents(engine, principal.member_id, at=now)
    return [with_time_left(r, now) for r in rows]


def with_time_left(row: dict, now: datetime) -> dict:
    """``row`` with ``clock`` (the one running: 接单 ``respond`` until taken, then 办结 ``complete``),
    ``left`` (time to that clock's deadline; negative when overdue) and ``due`` (that deadline)."""
    from gridmap.deadlines import RESPOND, running_clock

    clock = running_clock(row)
    due = row.get("respond_due_at") if clock == RESPOND else row.get("deadline_at")
    return {**row, "clock": clock, "due": due, "left": (due - now) if due else None}


def act_on_incident(engine, principal, incident_id: str, action: str, note: str | None = None,
                    photo: bytes | None = None, upload_dir=None, photo_max_bytes: int | None = None) -> dict:
    """接单 (``claim`` an unassigned incident of the caller's region), ``accept`` one assigned to them,
    add a progress ``note`` or ``close`` it with a result note and an optional photo — all stored as
    incident events. Raises ``geodata.store.incidents.NotFound`` for a missing incident or one the
    caller may not see (the same answer), IncidentRefused for the rest (nothing changed). Each step is
    audited in its own transaction (:mod:`api.usecases.dispatch`)."""
    from api.usecases import dispatch
    from geodata import photos
    from geodata.store import incidents
    from gridmap import dispatch as rules

    inc = _visible_incident(engine, principal, incident_id)
    if action == "close" and not (note or "").strip():
        raise IncidentRefused("办结说明 note 不能为空")
    stored = None
    if photo:
        try:
            stored = photos.save_photo(photo, upload_dir, max_bytes=photo_max_bytes or photos.MAX_PHOTO_BYTES)
        except photos.PhotoError as e:
            raise IncidentRefused(f"照片 photo：{e}") from None
    kept = [{"path": stored.path, "sha256": stored.sha256}] if stored else None
    try:
        if action == "note":
            return dispatch.add_note(engine, principal, incident_id, note.strip(), kept)
        return dispatch.act(engine, principal, incident_id, action, acting_member=principal.member_id,
                            note=(note or "").strip() or None, photos=kept)
    except (rules.IllegalTransition, incidents.WrongMember) as e:
        if stored is not None:
            photos.remove_photo(upload_dir, stored)
        raise IncidentRefused(_refusal(inc, action, e)) from None
    except BaseException:
        if stored is not None:
            photos.remove_photo(upload_dir, stored)
        raise


def _visible_incident(engine, principal, incident_id: str) -> dict:
    from geodata.store import incidents

    inc = incidents.get_incident(engine, incident_id)
    mine = principal.member_id is not None and inc["assigned_member_id"] == principal.member_id
    if principal.member_id is None or not (mine or principal.covers(inc["grid_code"], inc["community_code"],
                                                                    inc["street_code"])):
        raise incidents.NotFound(incident_id)
    return inc


def _refusal(inc: dict, action: str, error: Exception) -> str:
    if action == "claim":
        return "该事件已被其他人接单或已派单，请刷新后选择其他事件。"
    return f"当前状态不能执行此操作（{error}）"


def my_notices(engine, principal, limit: int = 10) -> list[dict]:
    """The caller's latest deadline reminders (站内提醒), unread first, then newest; ids and category only,
    no personal data."""
    from geodata.store import notices

    return notices.member_notices(engine, principal.member_id, limit) if principal.member_id else []


def mark_my_notice_read(engine, principal, notice_id: int, now: datetime | None = None) -> dict | None:
    """标为已读: one of the caller's own notices, audited as ``notice_read`` (the notice id) in the same
    transaction. None, and nothing written, for a missing notice and another member's alike."""
    from geodata.store import notices

    if principal.member_id is None:
        return None
    with audited(engine, staff(principal), "notice_read", "notices") as (tx, entry):
        row = notices.mark_member_notice_read(tx, notice_id, principal.member_id, now or datetime.now(UTC))
        if row is None:
            entry.nothing_written()
        else:
            entry.ids, entry.detail = [row["notice_id"]], {"incident_id": row["incident_id"]}
    return row


def is_on_duty(engine, principal) -> bool | None:
    """在岗 (True) or 离岗 (False) of the caller's member; None for an account without a member."""
    from geodata.store import incidents

    if principal.member_id is None:
        return None
    try:
        return incidents.member_available(engine, principal.member_id)
    except incidents.NotFound:
        return None


def set_on_duty(engine, principal, on_duty: bool) -> bool:
    """在岗/离岗 of the caller's member (audited as a write, in its transaction); returns the new availability."""
    from geodata.store import incidents

    if principal.member_id is None:
        raise incidents.NotFound("no member")
    with audited(engine, staff(principal), "availability", "members") as (tx, entry):
        value = incidents.set_available(tx, principal.member_id, on_duty)
        entry.ids, entry.detail = [principal.member_id], {"available": value}
    return value
