"""``gridmap link``: 包片联户 — link every household to one party member (5–10 each), optimally.

The plan step and the figures shared with ``gridmap plan`` live in :mod:`api.usecases.links`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import typer
from rich.table import Table

from api.commands.common import COORDS_HELP, console, fail, figures_table, read
from api.usecases.links import summary_rows
from gridmap.contract import MAX_LINKS, MIN_LINKS

#: Columns of the links CSV, in order.
CSV_COLUMNS = ["household_id", "member_id", "distance_m", "visit_order"]


def read_previous(path: Path) -> pd.DataFrame:
    """Previous links from a CSV with ``household_id`` and ``member_id`` (ids kept as text)."""
    from geodata.errors import InputError, Problem

    try:
        df = pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    except Exception as e:  # unreadable file: report it as an input error, not a traceback
        raise InputError([Problem(f"cannot read CSV: {e}", source=str(path))]) from None
    missing = [c for c in ("household_id", "member_id") if c not in df.columns]
    if missing:
        raise InputError([Problem("column missing", source=str(path), column=c) for c in missing])
    return df[["household_id", "member_id"]]


def write_links_csv(links: pd.DataFrame, path: Path) -> None:
    """``household_id,member_id,distance_m,visit_order`` (metres to 0.1 m), sorted by member and order."""
    out = links[CSV_COLUMNS].copy()
    out["distance_m"] = out["distance_m"].round(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False, encoding="utf-8")


def shortage_table(result, limit: int = 15) -> Table:
    """Grids with unlinked households, worst first, with the nearest outside members who could help."""
    t = Table(title="shortage per grid", header_style="bold")
    for col in ("grid", "households", "unlinked", "members", "needed", "nearest outside members with room"):
        t.add_column(col, justify="left" if col in ("grid", "nearest outside members with room") else "right")
    g = result.grids[result.grids["unlinked"] > 0].sort_values(["unlinked", "grid_code"], ascending=[False, True])
    for _, row in g.head(limit).iterrows():
        near = ", ".join(f"{o['member_id']} ({o['grid_code']}, {o['distance_m']:.0f} m, {o['spare']} free)"
                         for o in row["nearest_outside"][:3]) or "—"
        t.add_row(str(row["grid_code"]), f"{row['households']:,}", f"{row['unlinked']:,}", f"{row['members']:,}",
                  f"{row['members_needed']:,}", near)
    if len(g) > limit:
        t.caption = f"… and {len(g) - limit} more grids"
    return t


def link_command(
    households: Path = typer.Option(..., "--households", help="Households layer (any format the importer reads)."),
    members: Path = typer.Option(..., "--members", help="Party members layer (optional min_links/max_links/available)."),
    out: Path = typer.Option(..., "--out", help="Links CSV to write: household_id,member_id,distance_m,visit_order."),
    grids: Path = typer.Option(None, "--grids", help="Grid polygons: fills missing grid codes, gives neighbours."),
    min_links: int = typer.Option(MIN_LINKS, "--min", help="Minimum households per member (policy: 5)."),
    max_links: int = typer.Option(MAX_LINKS, "--max", help="Maximum households per member (policy: 10)."),
    max_distance: float = typer.Option(None, "--max-distance", help="Longest link in metres."),
    allow_cross_grid: bool = typer.Option(False, "--allow-cross-grid",
                                          help="Short grids may borrow members of neighbouring grids with room."),
    previous: Path = typer.Option(None, "--previous", help="Previous links CSV (household_id,member_id) to keep stable."),
    keep_bonus: float = typer.Option(200.0, "--keep-bonus-m", help="Metres a change must save per changed link."),
    report: Path = typer.Option(None, "--report", help="Also write the full report (unlinked, members, grids) as JSON."),
    coords: str = typer.Option("wgs84", "--coords", help=COORDS_HELP),
):
    """Link every household to one party member (包片联户), 5–10 each, with the least total walking distance."""
    from gridmap.linkage import link_households

    if min_links < 0 or max_links < min_links:
        fail("need 0 <= --min <= --max")
    if max_distance is not None and max_distance <= 0:
        fail("--max-distance must be positive (metres)")
    hh = read(households, "households", coords=coords)
    mm = read(members, "members", coords=coords)
    gg = read(grids, "grids", coords=coords, fix=True) if grids else None
    if allow_cross_grid and gg is None:
        fail("--allow-cross-grid needs --grids (neighbouring grids come from the polygons)")
    prev = read_previous(previous) if previous else None
    with console.status("linking households"):
        result = link_households(hh, mm, min_links=min_links, max_links=max_links, max_distance_m=max_distance,
                                 allow_cross_grid=allow_cross_grid, grids=gg, previous=prev, keep_bonus_m=keep_bonus)
    write_links_csv(result.links, out)
    console.print(figures_table("包片联户 links", summary_rows(result)))
    if result.summary["grids_short"]:
        console.print(shortage_table(result))
    console.print(f"links → {out}")
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(report_dict(result), ensure_ascii=False, indent=1, default=str), encoding="utf-8")
        console.print(f"report → {report}")


def report_dict(result) -> dict:
    """JSON-ready report: summary, unlinked households with reasons, members out of band, short grids."""
    members = result.members
    return {
        "summary": result.summary,
        "unlinked": result.unlinked.to_dict(orient="records"),
        "members_below_minimum": members[members["status"] == "below minimum"].to_dict(orient="records"),
        "grids": result.grids[result.grids["unlinked"] > 0].to_dict(orient="records"),
    }
