"""Use case: the leaders' reports — an Excel workbook (导出Excel) of a :func:`api.usecases.leader.leader_view`.

One sheet per level: 街道, 社区, 网格, 党员, 超时事件. Each sheet starts with a header block (title,
report-date window, the data's date and source), then one row of Chinese column headers, then the
rows: names beside codes, numbers written as numbers (percentages as numbers with a % format).
Built with openpyxl; no FastAPI here.
"""

from __future__ import annotations

import io
import threading
from datetime import datetime
from typing import NamedTuple

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter

#: The data source note on every sheet and printout.
SOURCE_NOTE = "数据来源：网格党建管理系统数据库（街道/社区/网格边界、住户、党员、包片联户、事件）"

_AREA = [("households", "住户", "int"), ("members", "党员", "int"), ("linked_households", "已联户", "int"),
         ("link_coverage_pct", "联户率", "pct"), ("members_needed", "还需党员", "int"),
         ("covered_straight", "服务圈内住户（直线1000米）", "int")]
_KPI = [("incidents", "事件数", "int"), ("red", "红灯", "int"), ("yellow", "黄灯", "int"), ("green", "绿灯", "int"),
        ("acceptance_pct", "受理率", "pct"), ("on_time_close_pct", "按时办结率", "pct"), ("closed_pct", "办结率", "pct"),
        ("avg_response_hours", "平均响应时长（小时）", "num"), ("satisfaction_pct", "满意率", "pct")]
_HEAD_FILL = PatternFill("solid", fgColor="F2D7D5")


def window_text(start, end, category) -> str:
    """The report-date window in words (China dates)."""
    text = f"上报日期：{start or '最早'} 至 {end or '今天'}（北京时间）"
    return text + (f"；类别：{category}" if category else "")


def leader_workbook(view: dict, *, start=None, end=None, category=None, generated_at: datetime) -> bytes:
    """The workbook of a leader view as XLSX bytes (``generated_at`` shown in China time)."""
    wb = Workbook()
    wb.remove(wb.active)
    title = (view["path"][-1]["name"] if view["path"] else None) or view["region"]
    header = [f"{title}（{view['region']}）网格党建报表", window_text(start, end, category),
              f"数据日期：{generated_at:%Y-%m-%d %H:%M}（北京时间）", SOURCE_NOTE]
    names = view["names"]
    inc = view["incidents"]
    kpi = {lvl: {r["code"]: r for r in inc[f"by_{lvl}"]} for lvl in ("street", "community", "grid")}
    cov = view["coverage"]
    _sheet(wb, "街道", header, [("street_code", "街道编码", "text"), ("_name", "街道名称", "text"),
                                ("grids", "网格", "int"), ("blank_grids", "空白网格", "int")] + _AREA + _KPI,
           _with(cov["streets"], "street_code", names, kpi["street"]))
    _sheet(wb, "社区", header, [("community_code", "社区编码", "text"), ("_name", "社区名称", "text"),
                                ("grids", "网格", "int"), ("blank_grids", "空白网格", "int")] + _AREA + _KPI,
           _with(cov["communities"], "community_code", names, kpi["community"]))
    _sheet(wb, "网格", header, [("grid_code", "网格编码", "text"), ("name", "网格名称", "text"),
                                ("community_code", "社区编码", "text"), ("_community", "社区名称", "text"),
                                ("_branch", "党支部", "text"), ("_blank", "空白网格原因", "text")] + _AREA + _KPI,
           [{**r, "_community": names.get(r.get("community_code"), r.get("community_code")),
             "_branch": "已建" if r.get("has_branch") else "未建", "_blank": _blank_reason(r),
             **{k: v for k, v in kpi["grid"].get(r["grid_code"], {}).items() if k != "code"}} for r in cov["grids"]])
    _sheet(wb, "党员", header, [("rank", "名次", "int"), ("member_id", "党员编号", "text"), ("name", "姓名", "text"),
                                ("grid_code", "网格编码", "text"), ("_grid", "网格名称", "text"),
                                ("linked_households", "联系户数", "int"), ("visits_30d", "近30天走访", "int"),
                                ("incidents", "经办事件", "int"),
                                ("handled", "已办结", "int"), ("avg_rating", "平均评分", "num"),
                                ("satisfaction_pct", "满意率", "pct")],
           [{**m, "_grid": view["grid_names"].get(m["grid_code"]) or m["grid_code"]} for m in view["members"]])
    _sheet(wb, "超时事件", header, [("incident_id", "事件编号", "text"), ("category", "类别", "text"),
                                    ("grid_code", "网格编码", "text"), ("_grid", "网格名称", "text"),
                                    ("assigned_member_id", "经办党员编号", "text"), ("holder_name", "经办人", "text"),
                                    ("_reported", "上报时间", "text"), ("_deadline", "办结时限", "text"),
                                    ("held_hours", "经办时长（小时）", "num"), ("overdue_hours", "已超时（小时）", "num")],
           [{**o, "_grid": names.get(o.get("grid_code"), o.get("grid_code")), "_reported": _local(o["reported_at"]),
             "_deadline": _local(o["deadline_at"])} for o in inc["overdue"]])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _blank_reason(row: dict) -> str:
    from api.usecases.leader import BLANK_LABELS

    if not row.get("blank"):
        return ""
    reason = str(row.get("blank_reason") or "")
    return BLANK_LABELS.get(reason, reason)


def _local(iso: str | None) -> str:
    """An ISO time string shown in China time ``YYYY-MM-DD HH:MM``."""
    from gridmap.dispatch import LOCAL_TZ

    return datetime.fromisoformat(iso).astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M") if iso else ""


def _with(rows: list[dict], key: str, names: dict, kpi: dict) -> list[dict]:
    return [{**r, "_name": names.get(r[key], r[key]), **{k: v for k, v in kpi.get(r[key], {}).items() if k != "code"}}
            for r in rows]


def _sheet(wb: Workbook, name: str, header: list[str], columns: list[tuple[str, str, str]], rows: list[dict]) -> None:
    """One sheet: header lines, bold column headers, rows; percentages stored as fractions with a % format."""
    ws = wb.create_sheet(name)
    for i, line in enumerate(header, start=1):
        ws.cell(row=i, column=1, value=line).font = Font(bold=(i == 1), size=14 if i == 1 else 11)
    head_row = len(header) + 2
    for j, (_, label, _) in enumerate(columns, start=1):
        cell = ws.cell(row=head_row, column=j, value=label)
        cell.font, cell.fill = Font(bold=True), _HEAD_FILL
        ws.column_dimensions[get_column_letter(j)].width = max(10, 2 * len(label) + 2)
    for i, row in enumerate(rows, start=head_row + 1):
        for j, (key, _, kind) in enumerate(columns, start=1):
            value = row.get(key)
            cell = ws.cell(row=i, column=j, value=_cell_value(value, kind))
            if kind == "pct":
                cell.number_format = "0.0%"
            elif kind == "num":
                cell.number_format = "0.0"
    ws.freeze_panes = ws.cell(row=head_row + 1, column=1)


def _cell_value(value, kind: str):
    if value is None:
        return None
    if kind == "pct":
        return float(value) / 100.0
    if kind == "int":
        return int(value)
    if kind == "num":
        return float(value)
    return str(value)


#: Debian's Chromium (Playwright drives it; no downloaded browser).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--enable-unsafe-swiftshader")


#: One Chromium at a time: a PDF costs a browser's memory and a core for seconds; more requests wait.
_PDF_SLOTS = threading.BoundedSemaphore(1)


class PrintedPage(NamedTuple):
    """A print view already rendered: its HTML ``body`` and its response ``headers`` (type, CSP)."""

    body: bytes
    headers: dict[str, str]


def print_pdf(url: str, cookies: dict[str, str], *, page: PrintedPage | None = None, map_wait_ms: int = 60_000,
              chromium: str = CHROMIUM) -> bytes:
    """An A4 landscape PDF of the print view at ``url`` (Chromium print to PDF), visited with ``cookies``.

    With ``page`` (the view at ``url`` already rendered by the caller) Chromium is handed that HTML for
    ``url`` instead of asking the server for it: the figures are built once per PDF. Everything the page
    loads (styles, scripts, map tiles) still comes from the server with ``cookies``.

    Waits for the page and its own files (``load``: styles, scripts, fonts), then until the page marks
    ``body[data-map-ready]`` — set on the map's ``idle`` (every tile of the printed layers loaded and drawn)
    once the frame is copied for print — for at most ``map_wait_ms``; the tables print either way. Not
    ``networkidle``: that waited 500 ms past the last tile of every layer, and the page now asks only for
    the layers it prints.
    """
    from urllib.parse import urlsplit

    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    parts = urlsplit(url)
    with _PDF_SLOTS, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS))
        try:
            context = browser.new_context(locale="zh-CN", viewport={"width": 1123, "height": 794})
            context.add_cookies([{"name": k, "value": v, "domain": parts.hostname, "path": "/"}
                                 for k, v in cookies.items()])
            tab = context.new_page()
            if page is not None:
                _serve_printed(tab, url, page)
            tab.goto(url, wait_until="load")
            try:
                tab.wait_for_selector("body[data-map-ready]", state="attached", timeout=map_wait_ms)
            except PlaywrightTimeout:
                pass
            return tab.pdf(format="A4", landscape=True, print_background=True,
                           margin={"top": "10mm", "bottom": "10mm", "left": "10mm", "right": "10mm"})
        finally:
            browser.close()


def _serve_printed(tab, url: str, page: PrintedPage) -> None:
    """Answer Chromium's one request for the print view at ``url`` with ``page`` (a pattern the browser
    side matches, used once: no other request waits on Python)."""
    import re
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    pattern = re.compile("^" + re.escape(f"{parts.scheme}://{parts.netloc}{parts.path}") + r"(\?.*)?$")
    headers = {k: v for k, v in page.headers.items() if k.lower() not in ("content-length", "set-cookie")}
    tab.route(pattern, lambda route: route.fulfill(status=200, headers=headers, body=page.body), times=1)
