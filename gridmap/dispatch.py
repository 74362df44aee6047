"""Incident dispatch rules: response deadlines, 红黄绿灯 lights, the incident life cycle, responder ranking.

一键上报 → 智能分派 → 处置 → 反馈评价 (seed 002) and 群众点单 → 支部派单 → 党员接单 → 群众评单
(seeds 001, 004). Everything here is pure: datetimes, numbers and arrays in, decisions out; the
PostGIS queries that feed it live in ``geodata.store.nearest``, ``.routing`` and ``.incidents``.

Time: naive datetimes are read as China Standard Time (Asia/Shanghai, UTC+8, no daylight saving),
which is where the working-day calendar applies; results are timezone-aware.
Distances: metres on the sphere of mean radius ``gridmap.metric.EARTH_RADIUS_M`` (haversine).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from scipy.spatial import cKDTree

from gridmap.contract import COMPLEX_RESPONSE_WORKING_DAYS, ORDINARY_RESPONSE_HOURS, YELLOW_FRACTION
from gridmap.metric import EARTH_RADIUS_M, haversine_m

#: The time zone of the working-day calendar (China Standard Time).
LOCAL_TZ = ZoneInfo("Asia/Shanghai")

# -- response kinds and deadlines -----------------------------------------------------------------

ORDINARY = "ordinary"
COMPLEX = "complex"
RESPONSE_KINDS = (ORDINARY, COMPLEX)

#: Categories treated as complex (复杂事项, 3 working days) unless the reporter says otherwise:
#: disputes and matters that need a department's decision rather than a visit. Every other category
#: is ordinary (一般事项, 24 h). A level of 2 or more (escalated by the reporter) is complex too.
COMPLEX_CATEGORIES = frozenset({"矛盾纠纷", "物业管理", "安全生产", "国家安全", "综合受理", "统战工作"})
COMPLEX_MIN_LEVEL = 2


def response_kind(category: str | None, level: int | None = None, kind: str | None = None) -> str:
    """Whether an incident is ordinary (一般事项) or complex (复杂事项).

    Parameters
    ----------
    category : the incident category (e.g. ``民政``, ``矛盾纠纷``).
    level : the incident level; ``COMPLEX_MIN_LEVEL`` (2) or more makes it complex.
    kind : an explicit ``"ordinary"`` / ``"complex"`` from the reporter; wins over the rules.

    Returns
    -------
    ``"ordinary"`` or ``"complex"``.
    """
    if kind is not None:
        k = str(kind).strip().lower()
        if k not in RESPONSE_KINDS:
            raise ValueError(f"unknown response kind {kind!r}: use ordinary or complex")
        return k
    if level is not None and int(level) >= COMPLEX_MIN_LEVEL:
        return COMPLEX
    return COMPLEX if (category or "").strip() in COMPLEX_CATEGORIES else ORDINARY


@dataclass(frozen=True)
class WorkCalendar:
    """Working days (工作日): Monday–Friday, minus public ``holidays``, plus make-up ``workdays`` (调休上班).

    Attributes
    ----------
    holidays : dates that are not working days although they fall on Monday–Friday.
    workdays : dates that are working days although they fall on a weekend.
    """

    holidays: frozenset[date] = field(default_factory=frozenset)
    workdays: frozenset[date] = field(default_factory=frozenset)

    def is_working_day(self, d: date) -> bool:
        """True when ``d`` is a working day."""
        if d in self.workdays:
            return True
        return d.weekday() < 5 and d not in self.holidays

    def merged(self, other: "WorkCalendar") -> "WorkCalendar":
        """Both calendars together (a date in either holiday set is a holiday unless a workday says otherwise)."""
        return WorkCalendar(self.holidays | other.holidays, self.workdays | other.workdays)


_CAL_LINE = re.compile(r"^\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\s*(?:[,;\t ]\s*([^,;\t ]*))?")
_WORKDAY_WORDS = {"workday", "work", "working", "班", "上班", "调休上班", "补班"}
_HOLIDAY_WORDS = {"", "holiday", "off", "休", "休息", "假", "节假日", "放假"}


def parse_calendar(lines: Iterable[str], source: str = "calendar") -> WorkCalendar:
    """Read a holiday calendar from text lines.

    One date per line, ``YYYY-MM-DD`` (``/`` or ``.`` also accepted), optionally followed by a
    comma/space and a kind: ``holiday`` (default; also 休/放假) or ``workday`` (a weekend working
    day, 调休上班/班); anything after that (a name) is ignored. Blank lines, lines starting with
    ``#`` and a header line starting with ``date`` are skipped.

    Raises
    ------
    ValueError
        Naming the line of the first line that is not a date or has an unknown kind.
    """
    holidays: set[date] = set()
    workdays: set[date] = set()
    for n, raw in enumerate(lines, start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#") or line.lower().startswith("date"):
            continue
        m = _CAL_LINE.match(line)
        if not m:
            raise ValueError(f"{source} line {n}: expected YYYY-MM-DD[,holiday|workday], got {line[:40]!r}")
        try:
            d = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError as e:
            raise ValueError(f"{source} line {n}: {e}") from None
        kind = (m.group(4) or "").strip().lower()
        if kind in _WORKDAY_WORDS:
            workdays.add(d)
        elif kind in _HOLIDAY_WORDS:
            holidays.add(d)
        else:
            raise ValueError(f"{source} line {n}: unknown kind {kind!r} (use holiday or workday)")
    return WorkCalendar(frozenset(holidays), frozenset(workdays - holidays))


def to_local(t: datetime) -> datetime:
    """``t`` in China Standard Time; a naive ``t`` is taken to be CST already."""
    if t.tzinfo is None:
        return t.replace(tzinfo=LOCAL_TZ)
    return t.astimezone(LOCAL_TZ)


def add_working_days(start: datetime, days: int, calendar: WorkCalendar | None = None) -> datetime:
    """The moment ``days`` working days after ``start`` (CST).

    The clock keeps the time of day and counts only working days: Friday 10:00 + 3 → Wednesday
    10:00. A report made on a non-working day starts the clock at 00:00 of the next working day,
    so Saturday 10:00 + 3 → Thursday 00:00 (the end of Wednesday).
    """
    cal = calendar or WorkCalendar()
    t = to_local(start)
    d = t.date()
    if not cal.is_working_day(d):
        while not cal.is_working_day(d):
            d += timedelta(days=1)
        t = datetime.combine(d, time(0), tzinfo=LOCAL_TZ)
    counted = 0
    while counted < days:
        d += timedelta(days=1)
        if cal.is_working_day(d):
            counted += 1
    return datetime.combine(d, t.timetz().replace(tzinfo=None), tzinfo=LOCAL_TZ)


def deadline(reported_at: datetime, kind: str, calendar: WorkCalendar | None = None) -> datetime:
    """Response deadline: ordinary 24 clock hours (一般事项24小时), complex 3 working days (复杂事项3个工作日).

    Returns a timezone-aware datetime in CST.
    """
    if kind == ORDINARY:
        return to_local(reported_at) + timedelta(hours=ORDINARY_RESPONSE_HOURS)
    if kind == COMPLEX:
        return add_working_days(reported_at, COMPLEX_RESPONSE_WORKING_DAYS, calendar)
    raise ValueError(f"unknown response kind {kind!r}")


# -- 红黄绿灯 ------------------------------------------------------------------------------------

GREEN, YELLOW, RED = "green", "yellow", "red"
LIGHTS = (GREEN, YELLOW, RED)


def light(reported_at: datetime, deadline_at: datetime, at: datetime, closed_at: datetime | None = None,
          yellow_fraction: float = YELLOW_FRACTION) -> str:
    """The 红黄绿灯 light of an incident.

    Evaluated at ``closed_at`` for a closed incident (its light is then final), else at ``at``:
    red when past the deadline, yellow in the last ``yellow_fraction`` (20 %) of the window from
    report to deadline (wall-clock time), green otherwise.
    """
    t = to_local(closed_at if closed_at is not None else at)
    r, d = to_local(reported_at), to_local(deadline_at)
    if t > d:
        return RED
    if t >= d - (d - r) * yellow_fraction:
        return YELLOW
    return GREEN


def lights(reported_at: Sequence[datetime], deadline_at: Sequence[datetime | None], at: datetime,
           closed_at: Sequence[datetime | None] | None = None) -> list[str | None]:
    """:func:`light` of many incidents; None where there is no deadline."""
    closed = closed_at if closed_at is not None else [None] * len(reported_at)
    return [None if d is None else light(r, d, at, c) for r, d, c in zip(reported_at, deadline_at, closed)]


# -- incident life cycle ---------------------------------------------------------------------------

REPORTED, ASSIGNED, ACCEPTED, CLOSED, RATED = "reported", "assigned", "accepted", "closed", "rated"
STATES = (REPORTED, ASSIGNED, ACCEPTED, CLOSED, RATED)
OPEN_STATES = (REPORTED, ASSIGNED, ACCEPTED)

#: action → (states it may start from, state it leads to). Assigning again before acceptance
#: re-dispatches (the first responder did not answer); everything else moves strictly forward.
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "assign": (frozenset({REPORTED, ASSIGNED}), ASSIGNED),   # 支部派单
    "accept": (frozenset({ASSIGNED}), ACCEPTED),             # 党员接单
    "claim": (frozenset({REPORTED}), ACCEPTED),              # 党员抢单: take an unassigned incident and accept it
    "close": (frozenset({ACCEPTED}), CLOSED),                # 处置办结
    "rate": (frozenset({CLOSED}), RATED),                    # 群众评单
}
ACTIONS = tuple(TRANSITIONS)
RATING_RANGE = (1, 5)


class IllegalTransition(ValueError):
    """An action that the incident's current state does not allow."""

    def __init__(self, state: str, action: str):
        self.state, self.action = state, action
        allowed = sorted(TRANSITIONS[action][0]) if action in TRANSITIONS else []
        super().__init__(f"cannot {action} an incident that is {state}"
                         + (f" (only from {', '.join(allowed)})" if allowed else ""))


def next_state(state: str, action: str) -> str:
    """The state after ``action``; raises :class:`IllegalTransition` if ``state`` does not allow it."""
    if action not in TRANSITIONS:
        raise ValueError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    sources, target = TRANSITIONS[action]
    if state not in sources:
        raise IllegalTransition(state, action)
    return target


def check_rating(rating: int | None) -> int:
    """A satisfaction rating 1–5 (满意度评价); ValueError otherwise (also for a missing rating)."""
    lo, hi = RATING_RANGE
    if rating is None or isinstance(rating, bool) or int(rating) != rating or not lo <= int(rating) <= hi:
        raise ValueError(f"rating must be an integer {lo}–{hi}, got {rating!r}")
    return int(rating)


#: Status words found in exported grid-incident systems, mapped onto the states above.
_STATUS_WORDS = (
    (("关闭", "办结", "结案", "已处置", "完成"), CLOSED),
    (("评价",), RATED),
    (("接单", "处置中", "处理中", "办理中"), ACCEPTED),
    (("派单", "分派", "已派", "指派"), ASSIGNED),
    (("上报", "待", "新建", "受理"), REPORTED),
)


def normalise_status(status: str | None) -> str:
    """Map an incoming status onto :data:`STATES` (``网格员关闭`` → ``closed``); None/blank → ``reported``.

    Raises ValueError for a status that matches nothing.
    """
    if status is None or not str(status).strip():
        return REPORTED
    s = str(status).strip()
    if s.lower() in STATES:
        return s.lower()
    if "未评价" in s:
        return CLOSED
    for words, state in _STATUS_WORDS:
        if any(w in s for w in words):
            return state
    raise ValueError(f"unknown incident status {s!r}")


# -- escalation (吹哨报到) ---------------------------------------------------------------------------

ESCALATION_LEVELS = ("grid", "community", "street")


def escalate(find: Callable[[str], list], levels: Sequence[str] = ESCALATION_LEVELS) -> tuple[str | None, list]:
    """Widen the search for a responder grid → community → street (吹哨报到) until someone is found.

    Parameters
    ----------
    find : called with each level name in turn; returns the suitable responders at that level
        (an empty list when nobody is suitable, None when the incident has no area at that level).
    levels : the levels in order.

    Returns
    -------
    ``(level, candidates)``: the first level with candidates; when none has any, the last level
    that could be searched with an empty list (or ``(None, [])`` when no level could be searched).
    """
    reached = None
    for lv in levels:
        got = find(lv)
        if got is None:
            continue
        reached = lv
        if got:
            return lv, list(got)
    return reached, []


# -- nearest responders (files; the database does the same with PostGIS KNN) ------------------------

def _unit_xyz(lon, lat) -> np.ndarray:
    lon, lat = np.radians(np.asarray(lon, dtype=float)), np.radians(np.asarray(lat, dtype=float))
    c = np.cos(lat)
    return np.column_stack([c * np.cos(lon), c * np.sin(lon), np.sin(lat)])


def _chord(distance_m: float) -> float:
    """Chord length on the unit sphere of a great-circle distance in metres."""
    return 2.0 * np.sin(min(distance_m / EARTH_RADIUS_M, np.pi) / 2.0)


def has_skill(skills, skill: str | None) -> bool:
    """True when ``skill`` is None or among ``skills`` (a list, or a comma-separated string)."""
    if skill is None:
        return True
    if skills is None or (isinstance(skills, float) and np.isnan(skills)):
        return False
    items = skills if isinstance(skills, (list, tuple, set, frozenset, np.ndarray)) else str(skills).split(",")
    return skill in {str(s).strip() for s in items}


class ResponderIndex:
    """Nearest available responders by great-circle distance, exactly (a KD-tree on the unit sphere).

    Points go onto the unit sphere in 3-D, where straight-line (chord) distance grows strictly with
    great-circle distance, so SciPy's ``cKDTree`` ranks exactly as haversine does; the metres
    reported are haversine metres. Ties are broken by id, like the database query.

    Parameters
    ----------
    ids : responder ids (``member_id``).
    lon, lat : WGS84 degrees.
    skills : per responder a list of skill tags (法律, 医疗, 心理 …) or None.
    available : per responder availability; unavailable responders are never proposed.
    """

    def __init__(self, ids, lon, lat, skills=None, available=None):
        self.ids = np.asarray([str(i) for i in ids], dtype=object)
        self.lon = np.asarray(lon, dtype=float)
        self.lat = np.asarray(lat, dtype=float)
        n = len(self.ids)
        self.skills = list(skills) if skills is not None else [None] * n
        self.available = np.ones(n, bool) if available is None else np.asarray(
            [bool(a) if a is not None and a == a else True for a in available], dtype=bool)
        self._xyz = _unit_xyz(self.lon, self.lat)
        self._trees: dict[str | None, tuple[np.ndarray, cKDTree | None]] = {}

    def _tree(self, skill: str | None):
        if skill not in self._trees:
            keep = self.available & np.array([has_skill(s, skill) for s in self.skills], dtype=bool)
            rows = np.flatnonzero(keep)
            self._trees[skill] = (rows, cKDTree(self._xyz[rows]) if len(rows) else None)
        return self._trees[skill]

    def nearest(self, lon: float, lat: float, k: int = 5, skill: str | None = None,
                radius_m: float | None = None) -> list[tuple[str, float]]:
        """Up to ``k`` suitable responders nearest to ``(lon, lat)`` as ``(id, metres)``, nearest first.

        ``radius_m`` (metres, great circle) drops anyone farther away.
        """
        rows, tree = self._tree(skill)
        if tree is None or k <= 0:
            return []
        q = _unit_xyz([lon], [lat])[0]
        kk = min(k, len(rows))
        dist, idx = tree.query(q, k=kk)
        dist, idx = np.atleast_1d(dist), np.atleast_1d(idx)
        # Everything as near as the k-th (ties at the cut included), so the id tie-break is exact.
        reach = float(dist[-1]) * (1 + 1e-9) + 1e-15
        if radius_m is not None:
            reach = min(reach, _chord(float(radius_m)) * (1 + 1e-9) + 1e-15)
        cand = rows[np.asarray(tree.query_ball_point(q, reach), dtype=np.int64)]
        d = haversine_m(lon, lat, self.lon[cand], self.lat[cand])
        if radius_m is not None:
            ok = d <= radius_m
            cand, d = cand[ok], d[ok]
        order = rank(self.ids[cand], d)[:k]
        return [(str(self.ids[cand[i]]), float(d[i])) for i in order]


def rank(ids: Sequence[str] | np.ndarray, distance_m: Sequence[float] | np.ndarray) -> np.ndarray:
    """Positions sorted nearest first, equal distances by id (so every ranking is deterministic)."""
    id_array = np.asarray(ids, dtype=object)
    d = np.asarray(distance_m, dtype=float)
    return np.lexsort((id_array.astype(str), d)) if len(d) else np.zeros(0, dtype=np.int64)

