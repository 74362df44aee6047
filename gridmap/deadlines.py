"""Two deadline clocks per incident, each with its own 红黄绿灯 light.

- the **response** clock (接单时限): from the report until a responder takes it (``accepted_at``);
  default 24 clock hours (一般事项24小时响应);
- the **completion** clock (办结/反馈时限): from the report until it is closed (``closed_at``);
  default 24 h for ordinary matters, 3 working days for complex ones (复杂事项3个工作日反馈).

A response on time stays green even when the closure is late: each clock stops at its own moment.
Windows can differ per category (e.g. 2 h response for 安全生产) through :class:`DeadlineRules`,
built from a mapping (a TOML/JSON settings file read by the caller). Pure: no files, no database.

Time: naive datetimes are China Standard Time (see ``gridmap.dispatch``); results are timezone-aware.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gridmap import dispatch as rules
from gridmap.contract import COMPLEX_RESPONSE_WORKING_DAYS, ORDINARY_RESPONSE_HOURS, YELLOW_FRACTION

RESPOND, COMPLETE = "respond", "complete"
CLOCKS = (RESPOND, COMPLETE)
#: Chinese names of the clocks, for pages and notices.
CLOCK_LABELS = {RESPOND: "接单", COMPLETE: "办结"}


@dataclass(frozen=True)
class Window:
    """A deadline window: ``hours`` of clock time, or ``working_days`` by the holiday calendar."""

    hours: float | None = None
    working_days: int | None = None

    def __post_init__(self):
        if (self.hours is None) == (self.working_days is None):
            raise ValueError("a window has either hours or working_days")
        if (self.hours is not None and self.hours <= 0) or (self.working_days is not None and self.working_days < 1):
            raise ValueError("a window must be positive")

    def due(self, start: datetime, calendar: rules.WorkCalendar | None = None) -> datetime:
        """The deadline of a clock started at ``start`` (CST, timezone-aware)."""
        if self.hours is not None:
            return rules.to_local(start) + timedelta(hours=self.hours)
        assert self.working_days is not None  # __post_init__: exactly one of hours / working_days
        return rules.add_working_days(start, int(self.working_days), calendar)


DEFAULT_RESPOND = {rules.ORDINARY: Window(hours=ORDINARY_RESPONSE_HOURS),
                   rules.COMPLEX: Window(hours=ORDINARY_RESPONSE_HOURS)}
DEFAULT_COMPLETE = {rules.ORDINARY: Window(hours=ORDINARY_RESPONSE_HOURS),
                    rules.COMPLEX: Window(working_days=COMPLEX_RESPONSE_WORKING_DAYS)}


@dataclass(frozen=True)
class DeadlineRules:
    """Windows per response kind (``ordinary``/``complex``), overridden per category.

    Attributes
    ----------
    respond, complete : kind → :class:`Window` of the response and completion clocks.
    categories : category → ``{"respond": Window, "complete": Window}`` (either may be left out).
    """

    respond: Mapping[str, Window] = field(default_factory=lambda: dict(DEFAULT_RESPOND))
    complete: Mapping[str, Window] = field(default_factory=lambda: dict(DEFAULT_COMPLETE))
    categories: Mapping[str, Mapping[str, Window]] = field(default_factory=dict)

    def window(self, clock: str, category: str | None, kind: str) -> Window:
        """The window of ``clock`` for an incident of ``category`` and response ``kind``."""
        own = self.categories.get((category or "").strip(), {})
        if clock in own:
            return own[clock]
        return (self.respond if clock == RESPOND else self.complete)[kind]

    def due(self, clock: str, reported_at: datetime, category: str | None, kind: str,
            calendar: rules.WorkCalendar | None = None) -> datetime:
        """The deadline of ``clock`` for an incident reported at ``reported_at``."""
        return self.window(clock, category, kind).due(reported_at, calendar)


def _window(value, where: str) -> Window:
    if not isinstance(value, Mapping) or set(value) - {"hours", "working_days"}:
        raise ValueError(f"{where}: expected {{hours = N}} or {{working_days = N}}, got {value!r}")
    try:
        return Window(hours=value.get("hours"), working_days=value.get("working_days"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None


def _clock_table(data: Mapping, clock: str, source: str, defaults: Mapping[str, Window]) -> dict[str, Window]:
    given = data.get(clock, {})
    unknown = set(given) - set(rules.RESPONSE_KINDS)
    if unknown:
        raise ValueError(f"{source} [{clock}]: unknown kind {sorted(unknown)[0]!r} (use ordinary or complex)")
    return {**defaults, **{k: _window(v, f"{source} [{clock}].{k}") for k, v in given.items()}}


def rules_from_mapping(data: Mapping, source: str = "deadlines") -> DeadlineRules:
    """:class:`DeadlineRules` from a parsed settings file.

    Shape (TOML; JSON the same as objects)::

        [respond]                 # 接单时限 by response kind
        ordinary = { hours = 24 }
        [complete]                # 办结/反馈时限
        complex = { working_days = 3 }
        [categories."安全生产"]    # per category, either clock
        respond = { hours = 2 }
        complete = { hours = 24 }

    Kinds or clocks left out keep the policy defaults. Raises ValueError naming the entry that is wrong.
    """
    unknown = set(data) - {"respond", "complete", "categories"}
    if unknown:
        raise ValueError(f"{source}: unknown section {sorted(unknown)[0]!r} (respond, complete, categories)")
    categories = {}
    for name, clocks in dict(data.get("categories", {})).items():
        if not isinstance(clocks, Mapping) or not clocks or set(clocks) - set(CLOCKS):
            raise ValueError(f"{source} [categories.{name}]: give respond and/or complete windows")
        categories[str(name).strip()] = {c: _window(w, f"{source} [categories.{name}].{c}") for c, w in clocks.items()}
    return DeadlineRules(_clock_table(data, RESPOND, source, DEFAULT_RESPOND),
                         _clock_table(data, COMPLETE, source, DEFAULT_COMPLETE), categories)


def clock_light(reported_at: datetime, due_at: datetime | None, at: datetime, stopped_at: datetime | None = None,
                yellow_fraction: float = YELLOW_FRACTION) -> str | None:
    """The light of one clock: evaluated at ``stopped_at`` when it has stopped, else at ``at``; None
    without a deadline. Red past the deadline, yellow in the last ``yellow_fraction`` of the window."""
    if due_at is None:
        return None
    return rules.light(reported_at, due_at, at, stopped_at, yellow_fraction)


def stop_times(inc: Mapping) -> dict[str, datetime | None]:
    """When each clock stopped: response at ``accepted_at`` (or at ``closed_at`` for an incident closed
    without a recorded acceptance), completion at ``closed_at``."""
    return {RESPOND: inc.get("accepted_at") or inc.get("closed_at"), COMPLETE: inc.get("closed_at")}


def incident_lights(inc: Mapping, at: datetime) -> dict[str, str | None]:
    """``respond_light`` and ``complete_light`` of an incident (a mapping with ``reported_at``,
    ``respond_due_at``, ``deadline_at`` = completion deadline, ``accepted_at``, ``closed_at``, ``status``)
    at ``at``. A clock whose stop is unknown on a finished incident (imported as closed) has no light."""
    finished = inc.get("status") in (rules.CLOSED, rules.RATED)
    stops = stop_times(inc)
    dues = {RESPOND: inc.get("respond_due_at"), COMPLETE: inc.get("deadline_at")}
    out = {}
    for clock in CLOCKS:
        unknown_stop = stops[clock] is None and (finished or (clock == RESPOND and inc.get("status") == rules.ACCEPTED))
        out[f"{clock}_light"] = None if unknown_stop else clock_light(inc["reported_at"], dues[clock], at, stops[clock])
    return out


def running_clock(inc: Mapping) -> str | None:
    """The clock a responder is racing now: response until taken, then completion; None when closed."""
    status = inc.get("status")
    if status in (rules.REPORTED, rules.ASSIGNED):
        return RESPOND
    return COMPLETE if status == rules.ACCEPTED else None
