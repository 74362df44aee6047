"""The leaders' page (领导驾驶舱, ``/leader``): one screen for a street, community or grid.

Headline figures against the policy targets, the blank grids with reasons, the live map, drill-down
street → community → grid (``/leader?region=CODE``), incident counts and KPIs for a report-date window
and category, the overdue list, and the members with their ranking (亮晒比拼, ``ranking=off`` hides
it). Every figure comes from :func:`api.usecases.leader.leader_view`, the use case behind
``GET /coverage`` and ``GET /incidents/stats``. Role and region are checked on the server; a region
outside the user's regions answers the same 404 as a missing one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from api.auth import Principal, public
from api.web.pages import NOT_FOUND, PageError, PagePrincipal, require_page_role
from api.web.render import render

router = APIRouter(include_in_schema=False)

LIGHT_NAMES = {"red": "红灯（超时）", "yellow": "黄灯（临近期限）", "green": "绿灯（正常）"}
STATUS_NAMES = {"reported": "待派单", "assigned": "已派单", "accepted": "处理中", "closed": "已办结", "rated": "已评价"}


def default_region(principal: Principal) -> str | None:
    """The region the page opens on: the user's first region (the first street for 全部辖区)."""
    from geodata.store.stats import first_street

    regions = [r for r in principal.regions if r != "*"]
    return regions[0] if regions else first_street(principal.engine)


def _parse_day(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PageError(422, f"{field}：日期格式应为 年-月-日（例如 2026-01-31）。") from None


def page_window(start: str | None, end: str | None) -> tuple[date | None, date | None]:
    """The report-date window of the page's filter form (China dates, both inclusive)."""
    t0, t1 = _parse_day(start, "开始日期"), _parse_day(end, "结束日期")
    if t0 and t1 and t1 < t0:
        raise PageError(422, "结束日期不能早于开始日期。")
    return t0, t1


def checked_view(principal: Principal, region: str | None, start: date | None, end: date | None,
                 category: str | None) -> dict:
    """:func:`leader_view` of a region the user may open (404 for missing and not yours alike)."""
    from api.usecases.leader import RegionNotFound, leader_view

    require_page_role(principal, "leader")
    region = region or default_region(principal)
    if not region or not principal.covers_code(region):
        raise PageError(404, NOT_FOUND)
    try:
        return leader_view(principal.engine, principal, region, at=datetime.now(UTC), start=start, end=end,
                           category=category or None)
    except RegionNotFound:
        raise PageError(404, NOT_FOUND) from None


@router.get("/leader")
@public
def leader_home(request: Request, principal: PagePrincipal,
                region: Annotated[str | None, Query(max_length=64)] = None,
                start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
                end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
                category: Annotated[str | None, Query(max_length=64)] = None,
                ranking: Annotated[str, Query(max_length=3)] = "on"):
    """Leaders' home: the region's figures against the policy targets, the map, incidents and members."""
    t0, t1 = page_window(start, end)
    view = checked_view(principal, region, t0, t1, category)
    bounds = _bounds(principal, view)
    return render(request, "leader/page.html", page="leader", title="领导驾驶舱", view=view,
                  region_names=request.state.region_names, light_names=LIGHT_NAMES, status_names=STATUS_NAMES,
                  window={"from": start or "", "to": end or "", "category": category or ""},
                  ranking=(ranking != "off"), query=_export_query(view["region"], start, end, category),
                  map_layers="grids,gaps,incidents", bounds=bounds, weekly=_weekly(principal, view),
                  heat_window=_heat_window(t0, t1, category))


def _heat_window(start: date | None, end: date | None, category: str | None) -> str:
    """The heat legend's window in words (report dates, China time)."""
    text = f"{start or '最早'} 至 {end or '今天'} 上报的{category or ''}事件"
    return text if start or end else "全部时间上报的" + (category or "") + "事件（可在下方“事件办理”选择时间）"


def _weekly(principal: Principal, view: dict) -> list[dict]:
    """The weekly reports (每周报表) of the page's street, when the street is the user's."""
    from geodata.store.reports import list_reports

    streets = [p["code"] for p in view["path"] if p["level"] == "street" and principal.covers_code(p["code"])]
    return list_reports(principal.engine, streets) if streets else []


@router.get("/leader/reports/{report_id}.xlsx")
@public
def weekly_download(principal: PagePrincipal, report_id: Annotated[int, Path(ge=1, le=2**62)]):
    """One weekly report of a street of the user's (the same 404 for a missing one and another's); audited."""
    from urllib.parse import quote

    from fastapi.responses import Response

    from api.usecases.weekly_reports import read_report
    from api.web.render import secure
    from geodata.store.auth import record_audit
    from geodata.store.reports import get_report

    require_page_role(principal, "leader")
    row = get_report(principal.engine, report_id)
    body = read_report(row) if row and principal.covers_code(row["street_code"]) else None
    if body is None:
        raise PageError(404, NOT_FOUND)
    record_audit(principal.engine, token_id=None, role=principal.role, member_id=principal.member_id,
                 action="export", what="weekly_report", ids=[row["street_code"]],
                 detail={"report_id": report_id, "week_start": row["week_start"].isoformat()})
    filename = f"每周报表-{row['street_code']}-{row['week_start']:%Y%m%d}.xlsx"
    return secure(Response(body, media_type=XLSX_TYPE,
                           headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"}))


def _export_query(region: str, start: str | None, end: str | None, category: str | None) -> str:
    """The query string naming the page's region and window, for the export links."""
    from urllib.parse import urlencode

    pairs = {"region": region, "from": start, "to": end, "category": category}
    return urlencode({k: v for k, v in pairs.items() if v})


def _bounds(principal: Principal, view: dict) -> list[float]:
    """WGS84 bounds ``[min_lon, min_lat, max_lon, max_lat]`` (degrees) of the region's grids, for the map."""
    from geodata.store.figures import grid_bounds

    codes = frozenset(g["grid_code"] for g in view["coverage"]["grids"])
    return grid_bounds(principal.engine, codes) or []


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.get("/leader/report.xlsx")
@public
def leader_excel(request: Request, principal: PagePrincipal,
                 region: Annotated[str | None, Query(max_length=64)] = None,
                 start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
                 end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
                 category: Annotated[str | None, Query(max_length=64)] = None):
    """导出Excel: the page's figures as one workbook (a sheet per level); the export is audited."""
    from urllib.parse import quote

    from fastapi.responses import Response

    from api.usecases.reports import leader_workbook
    from api.web.render import china_now, secure
    from geodata.store.auth import record_audit

    t0, t1 = page_window(start, end)
    view = checked_view(principal, region, t0, t1, category)
    body = leader_workbook(view, start=t0, end=t1, category=category, generated_at=china_now())
    record_audit(principal.engine, token_id=None, role=principal.role, member_id=principal.member_id,
                 action="export", what="leader_report", ids=[view["region"]], detail={"format": "xlsx"})
    filename = f"网格党建报表-{view['region']}-{china_now():%Y%m%d}.xlsx"
    response = Response(body, media_type=XLSX_TYPE,
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"})
    return secure(response)


def _print_context(principal: Principal, view: dict, start: date | None, end: date | None,
                   category: str | None) -> dict:
    """What the print view shows of a leader view already built (and checked)."""
    from api.usecases.reports import SOURCE_NOTE, window_text

    return {"view": view, "bounds": _bounds(principal, view), "source_note": SOURCE_NOTE,
            "window_text": window_text(start, end, category), "title": "网格党建报表"}


@router.get("/leader/print")
@public
def leader_print(request: Request, principal: PagePrincipal,
                 region: Annotated[str | None, Query(max_length=64)] = None,
                 start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
                 end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
                 category: Annotated[str | None, Query(max_length=64)] = None):
    """The print view (A4 landscape): a map page with street name, date, legend, scale, north arrow,
    grid names and the data source, then the tables. Browsers print it; the PDF export renders it."""
    t0, t1 = page_window(start, end)
    view = checked_view(principal, region, t0, t1, category)
    return render(request, "leader/print.html", **_print_context(principal, view, t0, t1, category))


@router.get("/leader/report.pdf")
@public
def leader_pdf(request: Request, principal: PagePrincipal,
               region: Annotated[str | None, Query(max_length=64)] = None,
               start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
               end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
               category: Annotated[str | None, Query(max_length=64)] = None):
    """打印/导出PDF: the print view rendered by Chromium (Playwright print to PDF) with the caller's own
    session, so the PDF shows exactly what the user may see; the export is audited."""
    from urllib.parse import quote

    from fastapi.responses import Response

    from api.auth import SESSION_COOKIE
    from api.usecases.reports import PrintedPage, print_pdf
    from api.web.render import china_now, secure
    from geodata.store.auth import record_audit

    t0, t1 = page_window(start, end)
    view = checked_view(principal, region, t0, t1, category)  # refuse before starting a browser
    url = str(request.url_for("leader_print")) + "?" + _export_query(view["region"], start, end, category)
    # the print view of this very view: Chromium is handed it for the print URL instead of asking the
    # server to build the view a second time (its styles, scripts and tiles still come with the session)
    printed = render(request, "leader/print.html", **_print_context(principal, view, t0, t1, category))
    body = print_pdf(url, {SESSION_COOKIE: request.cookies[SESSION_COOKIE]},
                     page=PrintedPage(bytes(printed.body), dict(printed.headers)))
    record_audit(principal.engine, token_id=None, role=principal.role, member_id=principal.member_id,
                 action="export", what="leader_report", ids=[view["region"]], detail={"format": "pdf"})
    filename = f"网格党建报表-{view['region']}-{china_now():%Y%m%d}.pdf"
    return secure(Response(body, media_type="application/pdf",
                           headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"}))
