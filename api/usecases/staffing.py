"""Use case: grid sizes and staffing — households against the band, grid workers needed, 空白网格 reasons.

Grid workers: one full-time worker per ``HOUSEHOLDS_PER_GRID_WORKER`` (300) households, rounded up.
A 空白网格 has no party branch, or households but no party member (``gridmap.coverage``'s rule).
"""

from __future__ import annotations

import io
import math

from sqlalchemy.engine import Engine

from geodata.store.staffing import grid_counts
from gridmap.contract import HOUSEHOLDS_PER_GRID_WORKER, grid_band

BAND_LABELS = {"below": "偏少", "in": "适中", "above": "偏多"}
KIND_LABELS = {"urban": "城市", "rural": "农村"}
#: Columns of the table and the Excel export, with their Chinese headers.
COLUMNS = (("grid_code", "网格编号"), ("name", "网格名称"), ("community", "所属社区"), ("kind_label", "类型"),
           ("households", "住户数"), ("band_text", "标准户数"), ("band_label", "规模"), ("members", "党员数"),
           ("linked", "已联户数"), ("linked_pct", "联户率%"), ("workers_needed", "需配网格员"),
           ("branch", "党支部"), ("blank_reason", "空白网格原因"))


def workers_needed(households: int) -> int:
    """Full-time grid workers a grid of ``households`` needs (1 per 300, rounded up; 0 for an empty grid)."""
    return math.ceil(households / HOUSEHOLDS_PER_GRID_WORKER)


def blank_reason(has_branch: bool | None, households: int, members: int) -> str | None:
    """Why a grid is a 空白网格, in Chinese, or None when it is not one."""
    no_branch = has_branch is not True
    no_members = households > 0 and members == 0
    if no_branch and no_members:
        return "未建党支部，且有住户无党员"
    if no_branch:
        return "未建党支部"
    return "有住户无党员" if no_members else None


def band_status(households: int, kind: str | None) -> str:
    lo, hi = grid_band(kind)
    return "below" if households < lo else "above" if households > hi else "in"


def staffing_row(r: dict) -> dict:
    """One grid's row of the table from its stored counts."""
    lo, hi = grid_band(r["kind"])
    band = band_status(r["households"], r["kind"])
    return {**r, "community": f"{r['community_name'] or ''}（{r['community_code']}）" if r["community_code"] else "—",
            "kind_label": KIND_LABELS.get((r["kind"] or "urban").lower(), r["kind"]), "band": band,
            "band_label": BAND_LABELS[band], "band_text": f"{lo}–{hi}",
            "linked_pct": round(100 * r["linked"] / r["households"], 1) if r["households"] else None,
            "workers_needed": workers_needed(r["households"]),
            "branch": r["branch_name"] or ("有" if r["has_branch"] else "无"),
            "blank_reason": blank_reason(r["has_branch"], r["households"], r["members"])}


def grid_staffing(engine: Engine, grid_codes: frozenset[str] | None) -> list[dict]:
    """The staffing table of the grids ``grid_codes`` (None: every grid)."""
    return [staffing_row(r) for r in grid_counts(engine, grid_codes)]


def totals(rows: list[dict]) -> dict:
    """Region totals for the table's header: grids, households, workers needed, out of band, blank."""
    return {"grids": len(rows), "households": sum(r["households"] for r in rows),
            "workers_needed": sum(r["workers_needed"] for r in rows),
            "out_of_band": sum(r["band"] != "in" for r in rows), "blank": sum(bool(r["blank_reason"]) for r in rows)}


def to_excel(rows: list[dict]) -> bytes:
    """The table as an .xlsx workbook (one sheet, Chinese headers, frozen header row)."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "网格规模与配备"
    ws.append([label for _, label in COLUMNS])
    for r in rows:
        ws.append([r[key] for key, _ in COLUMNS])
    ws.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
