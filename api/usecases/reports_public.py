"""Residents' reports without an account (一键上报 / 需求点单), following a ticket, and 评单.

The application layer behind ``/report`` (pages) and ``/open311`` (routes): no FastAPI here. A
report is checked (category, text lengths, place inside a grid of ours, photos by content), rate
limited per client address and per phone, and stored by :mod:`geodata.store.tickets`, which routes it
like a staff report. Following shows the status history in plain Chinese and China time with no
member name beyond the surname (王党员) and nothing of other residents.
Coordinates: the resident's point is WGS84 (phone position) or GCJ-02 (a pin on an Amap base map);
stored WGS84.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy.engine import Engine

from api.usecases import ticket_writes
from api.usecases.audit import RESIDENT
from api.usecases.deadlines import DeadlinePolicy
from geodata.crs import to_wgs84
from geodata.store import tickets
from geodata.store.routing import route_point
from gridmap import dispatch as rules

#: Categories a resident may choose (the ``report_categories`` setting may replace them).
DEFAULT_CATEGORIES = ("环境卫生", "设施报修", "矛盾纠纷", "安全隐患", "求助服务")
#: The category whose reports are needs (需求点单) matched to members' skills.
HELP_CATEGORY = "求助服务"
#: Skills a resident may ask for in a 求助服务 report (member ``skills`` tags).
HELP_SKILLS = ("法律", "医疗", "心理", "维修", "助老", "助残")
MAX_DESCRIPTION = 1000
MAX_ADDRESS = 200
#: Rate limits: reports per client address and per phone in an hour; wrong follow codes per address
#: in ten minutes (a four-digit code must not be guessable by trying).
REPORTS_PER_ADDRESS_HOUR = 5
REPORTS_PER_PHONE_HOUR = 3
WRONG_CODES_PER_ADDRESS = 10

#: What each life-cycle step means to a resident (``{who}`` is "王党员" or "工作人员").
STEP_TEXT = {"report": "您的诉求已受理，正在安排处理人员", "assign": "已派单给{who}", "accept": "{who}已接单，正在处理",
             "close": "{who}已办结，请您评价", "rate": "您已评价", "escalate": "已提请上级协调（吹哨报到）"}
STATUS_TEXT = {"reported": "已受理", "assigned": "已派单", "accepted": "处理中", "closed": "已办结，待评价",
               "rated": "已评价"}


class ReportRefused(ValueError):
    """A report, follow or rating refused; ``field`` names the form field, ``status`` the HTTP status."""

    def __init__(self, message: str, field: str | None = None, status: int = 422):
        super().__init__(message)
        self.message, self.field, self.status = message, field, status


class SlidingWindow:
    """At most ``limit`` events per key in the last ``window_s`` seconds (in this process)."""

    def __init__(self, limit: int, window_s: float):
        self.limit, self.window_s = int(limit), float(window_s)
        self._times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._times.setdefault(key, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times

    def full(self, key: str) -> bool:
        """Whether ``key`` has used up its events."""
        with self._lock:
            return len(self._recent(key, time.monotonic())) >= self.limit

    def add(self, key: str) -> None:
        """Count one event of ``key``."""
        now = time.monotonic()
        with self._lock:
            if len(self._times) > 100_000:  # bound the memory a flood of addresses can take
                self._times.clear()
            self._recent(key, now).append(now)


@dataclass
class Limits:
    """The rate limits of one app (kept on ``app.state``)."""

    reports: SlidingWindow = field(default_factory=lambda: SlidingWindow(REPORTS_PER_ADDRESS_HOUR, 3600))
    wrong_codes: SlidingWindow = field(default_factory=lambda: SlidingWindow(WRONG_CODES_PER_ADDRESS, 600))


@dataclass
class ReportIn:
    """What the resident sent. ``lon``/``lat`` in ``coords`` (wgs84 or gcj02); ``photos`` raw bytes."""

    category: str
    description: str
    lon: float | None
    lat: float | None
    coords: str = "wgs84"
    address: str = ""
    phone: str = ""
    skill: str = ""
    photos: list[bytes] = field(default_factory=list)
    honeypot: str = ""


def _check_text(report: ReportIn, categories: tuple[str, ...]) -> None:
    if report.honeypot:
        raise ReportRefused("提交失败，请稍后重试。", status=400)  # a bot filled the hidden field
    if report.category not in categories:
        raise ReportRefused("请选择事项类别。", "category")
    if not report.description.strip():
        raise ReportRefused("请简单描述一下情况。", "description")
    if len(report.description) > MAX_DESCRIPTION:
        raise ReportRefused(f"情况描述请不要超过 {MAX_DESCRIPTION} 字。", "description")
    if len(report.address) > MAX_ADDRESS:
        raise ReportRefused(f"地址请不要超过 {MAX_ADDRESS} 字。", "address")
    digits = tickets.normalise_phone(report.phone)
    if report.phone.strip() and not (7 <= len(digits) <= 15):
        raise ReportRefused("手机号格式不对（7–15 位数字），也可以不填。", "phone")
    if report.skill and report.skill not in HELP_SKILLS:
        raise ReportRefused("请从列表中选择需要的帮助。", "skill")


def _place(engine: Engine, report: ReportIn) -> tuple[float, float]:
    """The WGS84 point of the report, refused unless it lies in one of our grids."""
    if report.lon is None or report.lat is None or not (np.isfinite(report.lon) and np.isfinite(report.lat)):
        raise ReportRefused("请点“使用我的位置”或在地图上点选位置。", "place")
    if report.coords not in ("wgs84", "gcj02"):
        raise ReportRefused("位置坐标系不对。", "place")
    lon, lat = (float(np.asarray(v).ravel()[0])
                for v in to_wgs84(np.array([report.lon]), np.array([report.lat]), report.coords))
    with engine.connect() as conn:
        route = route_point(conn, lon, lat)
    if route["grid_code"] is None:
        raise ReportRefused("这个位置不在本街道的网格内，请确认位置或拨打 12345。", "place")
    return lon, lat


def _photos(raw: list[bytes], max_bytes: int) -> list[tickets.CleanPhoto]:
    raw = [p for p in raw if p]
    if len(raw) > tickets.MAX_PHOTOS:
        raise ReportRefused(f"最多上传 {tickets.MAX_PHOTOS} 张照片。", "photos")
    try:
        return [tickets.clean_photo(p, max_bytes, label=f"第 {i} 张照片") for i, p in enumerate(raw, start=1)]
    except tickets.PhotoError as e:
        raise ReportRefused(str(e), "photos") from None


def submit_report(engine: Engine, report: ReportIn, *, client: str, limits: Limits, upload_dir,
                  categories: tuple[str, ...] = DEFAULT_CATEGORIES, deadlines: DeadlinePolicy | None = None,
                  max_photo_bytes: int = tickets.MAX_PHOTO_BYTES) -> dict:
    """Check, rate-limit and store a resident's report; returns ``{"ticket", "follow_key", "incident_id"}``.

    Its two deadlines follow ``deadlines`` (the deployment's :func:`api.usecases.deadlines.deadline_policy`;
    the policy defaults when None), as a staff report of the same category would.

    The ticket and its audit row (role ``resident``, the incident id; never the phone) are one transaction.

    Raises :class:`ReportRefused` (nothing stored) for bad input (422), a filled honeypot (400) or too
    many reports from this address or phone in the last hour (429).
    """
    _check_text(report, categories)
    if limits.reports.full(client):
        raise ReportRefused("提交太频繁，请一小时后再试；紧急情况请拨打 110 或 12345。", status=429)
    if report.phone.strip():
        hashed = tickets.phone_hash(engine, report.phone)
        if tickets.reports_since(engine, hashed, tickets.recent_window(1)) >= REPORTS_PER_PHONE_HOUR:
            raise ReportRefused("这个手机号一小时内提交太多次，请稍后再试。", "phone", status=429)
    lon, lat = _place(engine, report)
    photos = _photos(report.photos, max_photo_bytes)
    skill = report.skill if report.category == HELP_CATEGORY and report.skill else None
    made = ticket_writes.store_ticket(engine, RESIDENT, "report", lon=lon, lat=lat, category=report.category,
                                      description=report.description.strip(), address=report.address.strip() or None,
                                      phone=report.phone.strip() or None, required_skill=skill, photos=photos,
                                      upload_dir=upload_dir, **ticket_deadlines(deadlines))
    limits.reports.add(client)
    return made


def ticket_deadlines(deadlines: DeadlinePolicy | None) -> dict:
    """The keyword arguments of :func:`geodata.store.tickets.create_ticket` that carry ``deadlines``."""
    policy = deadlines or DeadlinePolicy()
    return {"deadline_rules": policy.rules, "calendar": policy.calendar}


def open_ticket(engine: Engine, ticket: str, *, code: str = "", key: str = "", client: str,
                limits: Limits) -> dict | None:
    """The ticket if the code or link matches, else None (missing and wrong code alike). Wrong codes
    from one address are limited (:class:`ReportRefused` 429 once used up)."""
    if limits.wrong_codes.full(client):
        raise ReportRefused("尝试次数太多，请十分钟后再试。", "code", status=429)
    found = tickets.find_ticket(engine, ticket, code=code or None, key=key or None) if len(ticket) <= 40 else None
    if found is None and (code or key):
        limits.wrong_codes.add(client)
    return found


def _who(surname: str | None) -> str:
    return f"{surname}党员" if surname else "工作人员"


def follow_view(engine: Engine, row: dict) -> dict:
    """What the resident sees of their ticket: status, deadline, steps in plain Chinese, photos (bytes)."""
    steps = [{"at": h["at"], "text": STEP_TEXT.get(h["action"], h["action"]).format(who=_who(h["member_surname"]))}
             for h in tickets.ticket_history(engine, row["incident_id"])]
    return {"ticket": row["ticket"], "category": row["category"], "description": row["description"],
            "address": row["address"], "status": row["status"], "status_text": STATUS_TEXT.get(row["status"], ""),
            "reported_at": row["reported_at"], "deadline_at": row["deadline_at"], "rating": row["rating"],
            "rating_comment": row["rating_comment"], "can_rate": row["status"] == rules.CLOSED, "steps": steps}


def rate(engine: Engine, row: dict, rating: str | int, comment: str = "") -> dict:
    """评单 on a followed ticket: 1–5 and an optional comment (≤ 500 characters), once, when closed;
    audited as the resident's (the incident id and the rating, not the comment)."""
    try:
        value = int(rating)
    except (TypeError, ValueError):
        raise ReportRefused("请选择 1–5 星。", "rating") from None
    if not 1 <= value <= 5:
        raise ReportRefused("请选择 1–5 星。", "rating")
    if len(comment) > 500:
        raise ReportRefused("评价请不要超过 500 字。", "comment")
    try:
        return ticket_writes.rate_ticket(engine, RESIDENT, row["incident_id"], value, comment.strip() or None)
    except rules.IllegalTransition:
        raise ReportRefused("办结后才能评价，且每张工单只能评价一次。", "rating", status=409) from None


def when(value: datetime | None) -> str:
    """China time for the page (UTC+8, ``YYYY-MM-DD HH:MM``)."""
    return rules.to_local(value).strftime("%Y-%m-%d %H:%M") if value else "—"
