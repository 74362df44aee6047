"""Use case: the dispatchers' desk (调度台) — a region's open incidents, one incident with the responders
proposed for it, and 派单 (assigning it to one of them). No FastAPI here.

Role dispatcher or leader (admin too); an incident is the caller's when its grid, community or street lies
inside the caller's regions, and anything else reads as missing (the same ``None`` as a missing one).
Responders are proposed by the rule of ``geodata.store.routing.propose`` — available, with the required
skill, nearest first, widening grid → community → street (吹哨报到) — kept inside the caller's regions so
that every proposal can be assigned. Distances are straight-line great-circle metres, not walking.
Members' names and phones are personal data: shown where ``principal.allows_pii`` says so (audited as a
``pii_read`` of ``members``, ids only), masked otherwise. 派单 goes through ``api.usecases.dispatch.act``
(the step and its audit row in one transaction). Times are stored UTC; pages show China time (UTC+8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from sqlalchemy.engine import Engine

from api.usecases import dispatch
from api.usecases.notices import named, step_view
from geodata.store import auth as auth_store
from geodata.store import desk as store
from geodata.store import incidents
from geodata.store.audited import OneTransaction
from geodata.store.routing import PROPOSE_K, propose
from gridmap import dispatch as rules
from gridmap.deadlines import CLOCK_LABELS, COMPLETE, RESPOND, incident_lights
from gridmap.privacy import mask_record

#: Roles whose page this is (admin too): the dispatchers, and leaders who may assign as well.
DESK_ROLES = ("dispatcher", "leader")
PAGE_SIZE = 20
#: The list's groups in the order the desk works through them.
GROUPS = ((rules.REPORTED, "待派单"), (rules.ASSIGNED, "已派单待接单"), (rules.ACCEPTED, "处理中"))
STATUS_WORDS = dict(GROUPS) | {rules.CLOSED: "已办结", rules.RATED: "已评价"}
SOURCE_WORDS = {"public": "居民上报", "staff": "工作人员", "import": "导入"}
#: 红黄绿灯 in words (the page never shows a colour alone).
LIGHT_WORDS = {rules.RED: "红灯·已超时", rules.YELLOW: "黄灯·即将超时", rules.GREEN: "绿灯·正常"}
LIGHT_RANK = {rules.RED: 0, rules.YELLOW: 1, rules.GREEN: 2}
KIND_WORDS = {"member": "党员", "党员": "党员", "grid_worker": "网格员", "网格员": "网格员", "专职网格员": "专职网格员"}
LEVEL_WORDS = {"grid": "本网格", "community": "本社区（网格内无人，已扩大）", "street": "本街道（社区内无人，已扩大）"}
#: How much of a resident's description the list shows.
SUMMARY_CHARS = 40


class Conflict(Exception):
    """派单 refused because the incident moved on or the responder cannot take it; the text is the
    Chinese message the page shows. Nothing was written."""


@dataclass
class DeskPage:
    """One page of the desk's list: ``groups`` (key, words, items of this page), counts over every open
    incident of the region (``pending`` 待派单, ``red`` 红灯), ``total`` and ``group_totals`` after the
    filters, paging from 1."""

    groups: list[tuple[str, str, list[dict]]]
    total: int
    pending: int
    red: int
    page: int
    pages: int
    categories: list[str]
    filters: dict = field(default_factory=dict)
    group_totals: dict[str, int] = field(default_factory=dict)


# -- words ---------------------------------------------------------------------------------------------

def left_words(due: datetime | None, at: datetime) -> str:
    """Time to a deadline in Chinese (``还剩 3 小时 20 分`` / ``已超时 2 小时 5 分``); "" without one."""
    if due is None:
        return ""
    seconds = (due - at).total_seconds()
    minutes = int(abs(seconds) // 60)
    days, rest = divmod(minutes, 24 * 60)
    text = (f"{days} 天 " if days else "") + f"{rest // 60} 小时 {rest % 60} 分"
    return ("还剩 " if seconds >= 0 else "已超时 ") + text


def clock_view(inc: dict, lights: dict, clock: str, at: datetime) -> dict:
    """One clock (接单 or 办结) of an open incident: its light in words, the deadline, the time left, or
    when it stopped (``stopped_at``: the 接单 clock stops when the incident is taken)."""
    due = inc.get("respond_due_at") if clock == RESPOND else inc.get("deadline_at")
    light = lights.get(f"{clock}_light")
    stopped = inc.get("accepted_at") if clock == RESPOND else inc.get("closed_at")
    return {"label": CLOCK_LABELS[clock], "light": light, "words": LIGHT_WORDS.get(light or "", "无时限"),
            "due": due, "stopped_at": stopped, "left": "" if stopped else left_words(due, at)}


def worst_light(clocks: list[dict]) -> str | None:
    """The worst light among the running clocks (red before yellow before green)."""
    running = [c["light"] for c in clocks if c["light"] in LIGHT_RANK and not c["stopped_at"]]
    return min(running, key=LIGHT_RANK.__getitem__) if running else None


def summary(text: str | None) -> str:
    """A resident's description cut to :data:`SUMMARY_CHARS` characters (``…`` when cut)."""
    s = " ".join((text or "").split())
    return s if len(s) <= SUMMARY_CHARS else s[:SUMMARY_CHARS] + "…"


def incident_view(inc: dict, at: datetime) -> dict:
    """An open incident with the words the desk shows: both clocks, the worst running light, status,
    grid name beside its code, source, the description shortened."""
    lights = incident_lights(inc, at)
    clocks = [clock_view(inc, lights, c, at) for c in (RESPOND, COMPLETE)]
    return {**inc, "clocks": clocks, "worst": worst_light(clocks),
            "status_words": STATUS_WORDS.get(inc["status"], inc["status"]),
            "grid_label": named(inc.get("grid_name"), inc.get("grid_code")),
            "source_words": SOURCE_WORDS.get(inc.get("source_kind") or "staff", "工作人员"),
            "summary": summary(inc.get("description"))}


# -- people: names only where role and region allow (audited) ------------------------------------------

def present_members(engine, principal, cards: dict[str, dict]) -> dict[str, dict]:
    """Members' cards as the caller may see them: name and phone unmasked where
    ``principal.allows_pii`` for the member's grid (one ``pii_read`` audit row of their ids), masked
    otherwise; kind in words and the grid's name beside its code."""
    shown, unmasked = {}, []
    for mid, card in cards.items():
        if principal.allows_pii(grid_code=card.get("grid_code")):
            view = dict(card)
            if card.get("name") or card.get("phone"):
                unmasked.append(mid)
        else:
            view = mask_record(card, ("name", "phone"))
        view["masked"] = mid not in unmasked
        view["kind_words"] = KIND_WORDS.get(card.get("kind") or "member", card.get("kind") or "党员")
        view["grid_label"] = named(card.get("grid_name"), card.get("grid_code"))
        shown[mid] = view
    if unmasked:
        auth_store.record_audit(engine, token_id=principal.token_id or None, role=principal.role,
                                member_id=principal.member_id, action="pii_read", what="members",
                                ids=sorted(unmasked))
    return shown


def member_label(card: dict | None, member_id: str | None) -> str:
    """``赵六（M2）``: a member's name (as shown) beside the number, the number alone without a name."""
    if not member_id:
        return "—"
    return named((card or {}).get("name"), member_id)


# -- the list ------------------------------------------------------------------------------------------

def region_scope(principal):
    """The caller's regions expanded (street, community, grid codes), None for ``*``."""
    return None if principal.everywhere else principal.scope()


def _sort_key(item: dict) -> tuple:
    order = [g for g, _ in GROUPS]
    return (order.index(item["status"]), LIGHT_RANK.get(item["worst"] or "", 3), item["reported_at"],
            item["incident_id"])


def _matches(item: dict, status: str | None, light: str | None, category: str | None) -> bool:
    return ((status is None or item["status"] == status) and (light is None or item["worst"] == light)
            and (category is None or item["category"] == category))


def desk_page(engine, principal, status: str | None = None, light: str | None = None, category: str | None = None,
              page: int = 1, show: str | None = None, at: datetime | None = None) -> DeskPage:
    """Page ``page`` (from 1; past the end: the last) of the region's open incidents: 待派单, then
    已派单待接单, then 处理中, red before yellow before green, oldest first. ``show`` (an incident id)
    picks the page holding that incident instead. Holders' names shown as :func:`present_members`."""
    at = at or datetime.now(UTC)
    every = sorted((incident_view(r, at) for r in store.open_incidents(engine, region_scope(principal))), key=_sort_key)
    chosen = [i for i in every if _matches(i, status, light, category)]
    pages = max(1, -(-len(chosen) // PAGE_SIZE))
    ids = [i["incident_id"] for i in chosen]
    page = ids.index(show) // PAGE_SIZE + 1 if show in ids else min(max(1, int(page)), pages)
    items = chosen[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    holders = present_members(engine, principal, store.member_cards(
        engine, {i["assigned_member_id"] for i in items if i["assigned_member_id"]}))
    for item in items:
        item["holder"] = member_label(holders.get(item["assigned_member_id"]), item["assigned_member_id"])
    groups = [(key, words, [i for i in items if i["status"] == key]) for key, words in GROUPS]
    return DeskPage(groups=groups, total=len(chosen), pending=sum(i["status"] == rules.REPORTED for i in every),
                    red=sum(i["worst"] == rules.RED for i in every), page=page, pages=pages,
                    categories=sorted({i["category"] for i in every}),
                    filters={"status": status, "light": light, "category": category},
                    group_totals={key: sum(i["status"] == key for i in chosen) for key, _ in GROUPS})


# -- one incident --------------------------------------------------------------------------------------

def mine(engine, principal, incident_id: str) -> dict | None:
    """The incident if the caller's regions cover it; None when missing or another region's."""
    try:
        inc = incidents.get_incident(engine, incident_id)
    except incidents.NotFound:
        return None
    return inc if principal.covers(inc["grid_code"], inc["community_code"], inc["street_code"]) else None


def seen_state(inc: dict) -> str:
    """What the dispatcher saw when choosing (status and holder): a 派单 form sends it back, and a
    different state at submission means someone else acted meanwhile."""
    return f"{inc['status']}:{inc.get('assigned_member_id') or ''}"


def proposals(engine, principal, inc: dict) -> tuple[str | None, list[dict]]:
    """The level reached and the responders proposed for ``inc`` (``propose``'s rule inside the caller's
    regions), nearest first, each with ``distance_m`` (straight line, metres) and its number from 1."""
    with engine.connect() as conn:
        level, cands = propose(conn, inc["lon"], inc["lat"], inc, skill=inc["required_skill"], k=PROPOSE_K,
                               within=principal.grid_codes())
    return level, [{**c, "number": n} for n, c in enumerate(cands, start=1)]


def incident_detail(engine, principal, incident_id: str, at: datetime | None = None) -> dict | None:
    """One incident for the desk: its words (:func:`incident_view`), names of its grid, community and
    street, the steps so far, the holder, and — while it may still be assigned — the proposed responders
    with skills, kind, grid and open incidents held. None when missing or not the caller's."""
    inc = mine(engine, principal, incident_id)
    if inc is None:
        return None
    at = at or datetime.now(UTC)
    view = incident_view({**inc, **store.incident_extras(engine, incident_id)}, at)
    assignable = inc["status"] in (rules.REPORTED, rules.ASSIGNED)
    level, cands = proposals(engine, principal, inc) if assignable else (None, [])
    ids = {c["member_id"] for c in cands} | ({inc["assigned_member_id"]} if inc["assigned_member_id"] else set())
    people = present_members(engine, principal, store.member_cards(engine, ids))
    view["responders"] = [{**people.get(c["member_id"], {}), **c, "open_count": people.get(c["member_id"], {})
                           .get("open_count", 0), "current": c["member_id"] == inc["assigned_member_id"]}
                          for c in cands]
    view.update(assignable=assignable, level=level, level_words=LEVEL_WORDS.get(level or "", ""),
                holder=member_label(people.get(inc["assigned_member_id"]), inc["assigned_member_id"]),
                holder_card=people.get(inc["assigned_member_id"]), seen=seen_state(inc),
                community_label=named(view.get("community_name"), inc.get("community_code")),
                street_label=named(view.get("street_name"), inc.get("street_code")),
                steps=[step_view(e) for e in incidents.incident_events(engine, incident_id)],
                map=map_points(inc, cands))
    return view


def map_points(inc: dict, cands: list[dict]) -> dict:
    """What the detail's map draws (WGS84 degrees): the incident and the numbered responders — numbers
    only, no names (the list beside the map carries them)."""
    return {"incident": {"lon": inc["lon"], "lat": inc["lat"]},
            "responders": [{"number": c["number"], "lon": c["lon"], "lat": c["lat"]} for c in cands]}


# -- 派单 ----------------------------------------------------------------------------------------------

def assign(engine, principal, incident_id: str, member_id: str, seen: str) -> dict | None:
    """派单: give the caller's incident to ``member_id`` through ``api.usecases.dispatch.act`` (audited
    ``incident_assign``). ``seen`` is :func:`seen_state` as the dispatcher saw it.

    The incident's row stays locked from the check to the write (``act`` runs inside this transaction,
    its own as a savepoint), so a dispatcher who assigns at the same moment waits and then finds the
    state changed. None when the incident is missing or not the caller's; :class:`Conflict` (nothing
    written) when it moved on, someone else assigned it meanwhile, or the responder cannot take it.
    """
    try:
        with engine.begin() as conn:
            try:
                inc = incidents.get_row(conn, incident_id, lock=True)
            except incidents.NotFound:
                return None
            if not principal.covers(inc["grid_code"], inc["community_code"], inc["street_code"]):
                return None
            _still_as_seen(inc, member_id, seen)
            return dispatch.act(cast(Engine, OneTransaction(conn)), principal, incident_id, "assign",
                                member_id=member_id, within=principal.grid_codes())
    except rules.IllegalTransition:
        raise Conflict(f"未派单：事件 {incident_id} 刚被其他人处理，已不能派单。") from None
    except incidents.Unavailable:
        raise Conflict(f"未派单：{member_id} 现在不能接派（已离岗，或没有所需技能）。请选其他人。") from None
    except (incidents.OutsideRegions, incidents.NotFound):
        raise Conflict(f"未派单：{member_id} 不在您的管辖范围内，或不是可派的人员。") from None


def _still_as_seen(inc: dict, member_id: str, seen: str) -> None:
    """:class:`Conflict` unless the incident may still be assigned and is as the dispatcher saw it."""
    incident_id = inc["incident_id"]
    if inc["status"] not in (rules.REPORTED, rules.ASSIGNED):
        raise Conflict(f"未派单：事件 {incident_id} 现在是“{STATUS_WORDS.get(inc['status'], inc['status'])}”，"
                       "已不能派单或改派。")
    if seen_state(inc) != seen:
        raise Conflict(f"未派单：您打开页面后，事件 {incident_id} 已由其他人派给 {inc['assigned_member_id'] or '—'}。"
                       "请看最新情况后再决定是否改派。")
    if member_id == inc["assigned_member_id"]:
        raise Conflict(f"未派单：事件 {incident_id} 已经派给 {member_id}。")
