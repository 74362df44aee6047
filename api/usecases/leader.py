"""Use case: the leaders' figures — coverage against the policy targets and incident KPIs (领导驾驶舱).

One set of functions feeds ``GET /coverage``, ``GET /incidents/stats``, the ``/leader`` page and its
reports, so a figure on the page is the figure of the JSON for the same region and window.
Coverage is computed on request from the PostGIS store with :func:`gridmap.coverage.coverage_gaps`
(straight-line circle of 1,000 m: the store holds no road network). No FastAPI or Typer here.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta

import numpy as np
import pandas as pd

from geodata.jsonenc import to_plain
from gridmap.contract import HOUSEHOLDS_PER_GRID_WORKER, SERVICE_RADIUS_M
from gridmap.dispatch import LOCAL_TZ

#: Policy targets (percent) of the headline figures.
TARGET_BRANCH_PCT = 100.0
TARGET_LINKED_PCT = 100.0
TARGET_WITHIN_CIRCLE_PCT = 98.0
#: Member kinds counted as full-time grid workers (专职网格员).
GRID_WORKER_KINDS = ("grid_worker", "网格员", "专职网格员")

GRID_COLUMNS = ("grid_code", "name", "community_code", "street_code", "kind", "has_branch", "households", "members",
                "linked_households", "unlinked_households", "link_coverage_pct", "members_needed", "size_status",
                "band_min", "band_max", "blank", "blank_reason", "covered_straight")
ROLLUP_COLUMNS = ("grids", "blank_grids", "households", "members", "linked_households", "link_coverage_pct",
                  "members_needed", "covered_straight")
#: Chinese labels of the blank-grid reasons of :func:`gridmap.coverage.grid_status`.
BLANK_LABELS = {"no branch": "未建党支部", "no members": "有住户无党员", "no branch, no members": "未建支部且无党员"}


class RegionNotFound(LookupError):
    """The region holds no grids (unknown code)."""


def coverage_layers(engine, region: str, radius_m: float = SERVICE_RADIUS_M, gap_res: int = 9,
                    layers: tuple[str, ...] | None = None):
    """Coverage of ``region`` (street/community/grid code): ``(layers, summary)`` of
    :func:`gridmap.coverage.coverage_gaps` on the store's data plus the policy figures; radius in metres
    (straight line), gap cells at H3 resolution ``gap_res``.

    Read from the region's coverage snapshot (:mod:`geodata.store.coverage_snapshots`), which is never
    older than the last committed write; computed and stored when there is none. ``layers`` names the
    layers wanted (default: all four). Raises :class:`RegionNotFound` when the region holds no grids.
    """
    from geodata.store.coverage_snapshots import LAYERS

    snap = _snapshot(engine, region, radius_m, gap_res, LAYERS if layers is None else layers)
    return snap.layers, snap.summary


def _snapshot(engine, region: str, radius_m: float, gap_res: int, layers):
    """The coverage snapshot of the region, with the ``GET /coverage`` tables and the community label points
    derived once when it is built (``derived["report"]``, ``derived["community_labels"]``)."""
    from geodata.store.auth import region_kind
    from geodata.store.coverage_snapshots import SnapshotKey, cached

    if region_kind(engine, region) is None:  # before the snapshot's bookkeeping: a refused read writes nothing
        raise RegionNotFound(region)

    def derive(out: dict, summary: dict) -> dict:
        return {"report": coverage_tables(out, summary, region, radius_m),
                "community_labels": label_points(out["grid_status"], "community_code")}

    return cached(engine, SnapshotKey(region, float(radius_m), int(gap_res)),
                  lambda: compute_coverage(engine, region, radius_m, gap_res), layers, derive)


def compute_coverage(engine, region: str, radius_m: float = SERVICE_RADIUS_M, gap_res: int = 9):
    """:func:`coverage_layers` computed afresh from the store (no snapshot read or written)."""
    from geodata.store.coverage import load_coverage_inputs
    from gridmap.coverage import coverage_gaps

    layers = load_coverage_inputs(engine, region)
    grids = layers["grids"]
    if len(grids) == 0:
        raise RegionNotFound(region)
    links = layers.get("links")
    links = links if links is not None and len(links) else None
    out, summary = coverage_gaps(grids, layers["households"], layers["members"], links,
                                 layers["service_centres"], radius_m=radius_m, gap_res=gap_res)
    summary["links_source"] = "current run" if links is not None else "estimated"
    _add_policy_figures(engine, out["grid_status"], summary)
    return out, summary


def _add_policy_figures(engine, status: pd.DataFrame, summary: dict) -> None:
    """Grids with a branch, grids in their size band and grid workers against 1 per 300 households."""
    from geodata.store.stats import grid_worker_count

    n = len(status)
    with_branch = int(status["has_branch"].sum())
    in_band = int((status["size_status"] == "ok").sum())
    summary["grids_with_branch"] = with_branch
    summary["branch_pct"] = round(100.0 * with_branch / n, 2) if n else None
    summary["grids_in_band"] = in_band
    summary["in_band_pct"] = round(100.0 * in_band / n, 2) if n else None
    summary["grid_workers"] = grid_worker_count(engine, list(status["grid_code"]), GRID_WORKER_KINDS)
    summary["grid_workers_needed"] = math.ceil(summary["households"] / HOUSEHOLDS_PER_GRID_WORKER)


def _records(df: pd.DataFrame, cols) -> list[dict]:
    """Rows as JSON-safe dicts (NaN → None, numpy → Python, floats to 2 decimals)."""
    cols = [c for c in cols if c in df.columns]
    return to_plain(pd.DataFrame(df[cols]).to_dict("records"), ndigits=2)


def _level(status: pd.DataFrame, by: str) -> list[dict]:
    from gridmap.coverage import rollup

    if by not in status.columns or status[by].isna().all():
        return []
    r = rollup(status, by)
    if "covered_straight" in r.columns:
        hh = r["households"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            r["within_straight_pct"] = np.where(hh > 0, 100.0 * r["covered_straight"] / hh, np.nan)
    return _records(r, (by,) + ROLLUP_COLUMNS + ("within_straight_pct",))


def coverage_tables(out: dict, summary: dict, region: str, radius_m: float) -> dict:
    """The ``GET /coverage`` body from :func:`coverage_layers`' result (see :func:`coverage_report`)."""
    status = out["grid_status"]
    return {
        "region": region,
        "radius_m": radius_m,
        "summary": to_plain(summary, ndigits=2),
        "grids": _records(status, GRID_COLUMNS),
        "communities": _level(status, "community_code"),
        "streets": _level(status, "street_code"),
    }


def coverage_report(engine, region: str, radius_m: float = SERVICE_RADIUS_M) -> dict:
    """The body of ``GET /coverage``: ``summary`` and one row per grid, community and street of ``region``.

    Per row: households, members, linked households and link coverage (%), members needed, blank
    grids (空白网格) and households inside the straight-line service circle (``radius_m`` metres).
    """
    return _snapshot(engine, region, radius_m, 9, ()).derived["report"]


def label_points(status, by: str) -> list[dict]:
    """One label point per ``by`` value (e.g. ``community_code``): a point inside the union of its
    grids (WGS84 degrees), so a map or printout can name communities at any zoom."""
    if by not in status.columns or status[by].isna().all():
        return []
    areas = status[[by, status.geometry.name]].dissolve(by=by)
    points = areas.geometry.representative_point()
    return [{"code": str(code), "lon": round(p.x, 6), "lat": round(p.y, 6)} for code, p in points.items()]


def headline_figures(summary: dict) -> list[dict]:
    """The leader's headline figures against the policy targets, from a :func:`coverage_report` summary.

    Each item: ``key`` (the summary field the value comes from), ``label``, ``value`` (number or
    None), ``unit``, ``target`` (text), ``ok`` (meets the target) and ``note``.
    """
    within = summary.get("within_straight_pct")
    items = [
        ("branch_pct", "已建党支部的网格", summary.get("branch_pct"), "%", "100%",
         _ge(summary.get("branch_pct"), TARGET_BRANCH_PCT),
         f"{summary['grids_with_branch']:,} / {summary['grids']:,} 个网格；空白网格 {summary['blank_grids']:,} 个"),
        ("linked_pct", "住户已联户（包片联户）", summary.get("linked_pct"), "%", "100%",
         _ge(summary.get("linked_pct"), TARGET_LINKED_PCT),
         f"{summary['linked_households']:,} / {summary['households']:,} 户"),
        ("members_needed", "还需党员", summary.get("members_needed"), "名", "0 名",
         summary.get("members_needed") == 0, "按每名党员联系 10 户计"),
        ("within_straight_pct", "15分钟服务圈内住户", within, "%", "98%",
         _ge(within, TARGET_WITHIN_CIRCLE_PCT), _circle_note(summary)),
        ("in_band_pct", "户数达标的网格", summary.get("in_band_pct"), "%", "城市 300–500 户／农村 100–200 户",
         _ge(summary.get("in_band_pct"), 100.0), f"{summary['grids_in_band']:,} / {summary['grids']:,} 个网格"),
        ("grid_workers", "专职网格员", summary.get("grid_workers"), "名",
         f"每 300 户 1 名，需 {summary['grid_workers_needed']:,} 名",
         summary.get("grid_workers", 0) >= summary.get("grid_workers_needed", 0),
         f"{summary['households']:,} 户"),
    ]
    return [{"key": k, "label": label, "value": v, "unit": unit, "target": target, "ok": bool(ok), "note": note}
            for k, label, v, unit, target, ok, note in items]


def _circle_note(summary: dict) -> str:
    """How the service-circle figure is counted, or why there is none (no households, no centres)."""
    if summary.get("within_straight_pct") is not None:
        return "按直线 1,000 米计（未载入道路，非步行距离）"
    if not summary.get("households"):
        return "辖区内还没有住户，无法计算"
    return "辖区内外都没有登记党群服务中心，无法计算（请先导入服务中心）"


def _ge(value, target: float) -> bool:
    return value is not None and value >= target - 1e-9


def blank_grids(report: dict) -> list[dict]:
    """The 空白网格 of a :func:`coverage_report`, each with its reason in Chinese."""
    return [{**g, "reason": BLANK_LABELS.get(g.get("blank_reason"), g.get("blank_reason"))}
            for g in report["grids"] if g.get("blank")]


# -- incidents -------------------------------------------------------------------------------------

def day_window(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    """``[start 00:00, end+1 00:00)`` in China time for a report-date range (either end may be open)."""
    t0 = datetime.combine(start, time(0), tzinfo=LOCAL_TZ) if start else None
    t1 = datetime.combine(end + timedelta(days=1), time(0), tzinfo=LOCAL_TZ) if end else None
    return t0, t1


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def kpis(row: dict) -> dict:
    """The KPIs of one group of counts from :func:`geodata.store.stats.incident_counts`.

    受理率 ``acceptance_pct``: accepted within the response window, of those due; 按时办结率
    ``on_time_close_pct``: closed by the completion deadline, of those due; 办结率 ``closed_pct``:
    closed of all; 平均响应时长 ``avg_response_hours`` (hours from report to acceptance); 满意率
    ``satisfaction_pct``: rated 4–5 of those rated.
    """
    out = dict(row)
    out["acceptance_pct"] = _pct(row["accepted_on_time"], row["accept_due"])
    out["on_time_close_pct"] = _pct(row["closed_on_time"], row["close_due"])
    out["closed_pct"] = _pct(row["closed"], row["incidents"])
    out["satisfaction_pct"] = _pct(row["satisfied"], row["rated"])
    for k in ("avg_response_hours", "avg_rating"):
        out[k] = None if row.get(k) is None else round(float(row[k]), 2)
    return out


def member_names(engine, principal, member_ids: list[str]) -> dict[str, str | None]:
    """``member_id`` → the member's name, masked (``张*``) unless the caller's role and region allow it;
    the ids shown unmasked are written to the audit log (one entry, ids only)."""
    from geodata.store import stats

    return masked_names(engine, principal, member_ids, stats.member_names(engine, member_ids))


def masked_names(engine, principal, member_ids: list[str], people: dict[str, dict]) -> dict[str, str | None]:
    """:func:`member_names` of members already read (``member_id`` → ``{name, grid_code}``)."""
    from geodata.store.auth import record_audit
    from gridmap.privacy import mask_name

    out, unmasked = {}, []
    for member_id in member_ids:
        person = people.get(member_id, {"name": None, "grid_code": None})
        if principal.allows_pii(grid_code=person["grid_code"]) and person["name"]:
            out[member_id] = person["name"]
            unmasked.append(member_id)
        else:
            out[member_id] = mask_name(person["name"])
    if unmasked:
        record_audit(engine, token_id=principal.token_id or None, role=principal.role, member_id=principal.member_id,
                     action="pii_read", what="members", ids=unmasked, detail={"page": "leader"})
    return out


def incident_stats(engine, principal, region: str | None, *, at: datetime, start: date | None = None,
                   end: date | None = None, category: str | None = None, overdue_limit: int = 500,
                   people: dict[str, dict] | None = None) -> dict:
    """The body of ``GET /incidents/stats``: counts by light, category and grid, KPIs per street,
    community, grid and member, and the overdue (red) list with who holds each and for how long.

    Member names are personal data: shown through ``present_pii`` by the caller's rights (masked
    otherwise; unmasked reads audited). Times are returned timezone-aware. ``people`` may hold members
    already read (``member_id`` → ``{name, grid_code}``); only the others are looked up.
    """
    from geodata.store import stats

    t0, t1 = day_window(start, end)
    counts = stats.incident_counts(engine, region, at=at, t0=t0, t1=t1, category=category)
    overdue = stats.overdue_incidents(engine, region, at=at, t0=t0, t1=t1, category=category, limit=overdue_limit)
    ids = sorted({r["code"] for r in counts["member"] if r["code"]} | {o["assigned_member_id"] for o in overdue
                                                                       if o["assigned_member_id"]})
    known = people or {}
    missing = [i for i in ids if i not in known]
    names = masked_names(engine, principal, ids, {**(stats.member_names(engine, missing) if missing else {}), **known})
    for o in overdue:
        o["holder_name"] = names.get(o["assigned_member_id"])
        o["overdue_hours"] = round(float(o["overdue_hours"]), 1)
        o["held_hours"] = round(float(o["held_hours"]), 1)
    levels = {lvl: [kpis(r) for r in counts[lvl]] for lvl in ("street", "community", "grid", "member", "category")}
    for r in levels["member"]:
        r["name"] = names.get(r["code"])
    # every float is rounded where it is made (kpis, the hours above): no second pass over 5,000 rows
    return to_plain({"region": region, "from": start, "to": end, "category": category, "at": at,
                     "total": kpis(counts["total"][0]), **{f"by_{k}": v for k, v in levels.items()},
                     "overdue": overdue})


# -- members (亮晒比拼) ------------------------------------------------------------------------------

#: Members' visits (走访) are counted over this many days before the page's time.
VISIT_WINDOW_DAYS = 30


def member_figures(engine, principal, grid_codes: list[str], by_member: list[dict],  # noqa: PLR0913
                   at: datetime | None = None, rows: list[dict] | None = None) -> list[dict]:
    """Per member of the grids: households linked (current 包片联户 run), visits logged in the
    :data:`VISIT_WINDOW_DAYS` days before ``at`` (走访, ``visits_30d``), incidents handled (closed),
    incidents held, average rating, and a rank (亮晒比拼) by incidents handled, then average rating,
    then households linked. Names masked unless the caller's role and region allow (audited). ``rows``:
    :func:`geodata.store.stats.member_links` of the grids when already read.
    """
    from geodata.store import stats
    from geodata.store.visits import visit_counts

    rows = stats.member_links(engine, grid_codes) if rows is None else rows
    since = (at or datetime.now(LOCAL_TZ)) - timedelta(days=VISIT_WINDOW_DAYS)
    visits = {v["member_id"]: int(v["visits"]) for v in visit_counts(engine, grid_codes, since)}
    names = masked_names(engine, principal, [r["member_id"] for r in rows],
                         {r["member_id"]: {"name": r["name"], "grid_code": r["grid_code"]} for r in rows})
    incidents = {r["code"]: r for r in by_member if r["code"]}
    out = []
    for r in rows:
        inc = incidents.get(r["member_id"], {})
        out.append({"member_id": r["member_id"], "name": names.get(r["member_id"]), "grid_code": r["grid_code"],
                    "linked_households": int(r["linked_households"]),
                    "visits_30d": visits.get(r["member_id"], 0), "incidents": int(inc.get("incidents", 0)),
                    "handled": int(inc.get("closed", 0)), "avg_rating": inc.get("avg_rating"),
                    "satisfaction_pct": inc.get("satisfaction_pct")})
    ordered = sorted(out, key=lambda m: (-m["handled"], -(m["avg_rating"] or 0), -m["linked_households"],
                                         m["member_id"]))
    for rank, m in enumerate(ordered, start=1):
        m["rank"] = rank
    return ordered


# -- the whole page ---------------------------------------------------------------------------------

LEVEL_NAMES = {"street": "街道", "community": "社区", "grid": "网格"}


def leader_view(engine, principal, region: str, *, at: datetime, start: date | None = None,
                end: date | None = None, category: str | None = None) -> dict:
    """Everything the ``/leader`` page (and its reports) show for ``region``: the breadcrumb, the
    headline figures against the targets, the blank grids, the next level down with the same
    figures, the incident figures of the window and the members.

    The caller has checked role and region. Raises :class:`RegionNotFound` for a region without grids.
    """
    from geodata.store import stats

    snap = _snapshot(engine, region, SERVICE_RADIUS_M, 9, ())  # the tables and labels, not the layers
    report = snap.derived["report"]
    path = stats.region_path(engine, region)
    level = path[-1]["level"] if path else "street"
    children = _children(engine, region, level, report)
    grid_codes = [g["grid_code"] for g in report["grids"]]
    links = stats.member_links(engine, grid_codes)  # read once: the members table and the incident holders' names
    people = {r["member_id"]: {"name": r["name"], "grid_code": r["grid_code"]} for r in links}
    incidents = incident_stats(engine, principal, region, at=at, start=start, end=end, category=category,
                               people=people)
    members = member_figures(engine, principal, grid_codes, incidents["by_member"], at=at, rows=links)
    grid_names = {g["grid_code"]: g.get("name") for g in report["grids"]}
    labels = [dict(p) for p in snap.derived["community_labels"]] if level == "street" else []
    names = _names(engine, path, children, incidents)
    for point in labels:
        point["name"] = names.get(point["code"], point["code"])
    return {"region": region, "path": path, "level": level, "coverage": report,
            "headline": headline_figures(report["summary"]), "blank_grids": blank_grids(report),
            "children": children, "incidents": incidents, "members": members, "grid_names": grid_names,
            "names": names, "labels": labels}


def _children(engine, region: str, level: str, report: dict) -> list[dict]:
    """The level below ``region`` with its coverage figures: communities of a street, grids of a community."""
    from geodata.store import stats

    named = {c["code"]: c["name"] for c in stats.region_children(engine, region)}
    if level == "street":
        rows = [{**r, "code": r["community_code"]} for r in report["communities"]]
    elif level == "community":
        rows = [{**r, "code": r["grid_code"], "grids": 1, "blank_grids": int(bool(r.get("blank")))}
                for r in report["grids"]]
    else:
        return []
    for r in rows:
        r["name"] = named.get(r["code"]) or r.get("name")
        hh = r.get("households") or 0
        r["within_pct"] = round(100.0 * r["covered_straight"] / hh, 2) if hh and "covered_straight" in r else None
    return rows


def _names(engine, path: list[dict], children: list[dict], incidents: dict) -> dict[str, str]:
    """Names of every street, community and grid code the page shows (the code where none is stored)."""
    from geodata.store.users import region_names

    codes = {p["code"] for p in path} | {c["code"] for c in children}
    for key in ("by_street", "by_community", "by_grid"):
        codes |= {r["code"] for r in incidents[key] if r["code"]}
    codes |= {o[k] for o in incidents["overdue"] for k in ("grid_code", "community_code") if o.get(k)}
    return region_names(engine, sorted(codes))
