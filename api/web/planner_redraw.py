"""The planners' redraw pages (网格调整): run a redraw as a background job, edit the draft by hand, commit.

- ``/planner/redraw``: pick a community (names beside codes), lock grids, set the band (default by
  kind), minimal change on/off; the redraw runs as a procrastinate job (progress page survives reloads,
  a failure is shown plainly) and ends in a saved draft.
- ``/planner/drafts/{id}``: before / after maps side by side, each grid labelled with its households and
  band colour; the editor (click H3 cells, move them to a chosen grid with a live preview; undo / redo
  kept with the draft) through the JSON routes of ``api.routes.planner``; compare with another draft;
  commit (409s in Chinese); exports of the grids (GeoJSON, GeoPackage, Shapefile zip) and of the
  household changes (Excel).

Planners (and admin) only; a draft or job of a community outside the user's regions answers the same
404 as a missing one. Drafts hold no personal data (household ids and grid codes).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from api import jobs
from api.auth import Principal, public
from api.jobs.redraw import REDRAW_KIND, REDRAW_STEPS, enqueue_redraw
from api.usecases.audit import staff
from api.usecases import drafts as uc
from api.usecases import draft_exports
from api.web.pages import NOT_FOUND, PageError, PagePrincipal, require_page_role
from api.web.render import render
from geodata.store import drafts as draft_store
from geodata.store.grids import EditRefused
from geodata.store.importer import Actor
from geodata.store.jobs import STATE_LABELS, get_progress
from gridmap.contract import grid_band

router = APIRouter(include_in_schema=False)

REFUSALS = {"stale": "网格已被他人修改，请重新生成草案。",
            "out_of_band": "有网格的户数不在标准范围内（城市 300–500 户，农村 100–200 户），不能提交。",
            "non_contiguous": "有网格不连片（分成了几块），不能提交。",
            "removes_grid": "草案会删除仍有住户的网格，不能提交。"}


def _communities(principal: Principal) -> list[tuple[str, str]]:
    return draft_store.community_names(principal.engine, principal.community_codes())


def _draft(principal: Principal, draft_id: int) -> dict:
    require_page_role(principal, "planner")
    try:
        return uc.open_draft(principal.engine, draft_id, principal.community_codes())
    except uc.DraftMissing:
        raise PageError(404, NOT_FOUND) from None


def _actor(request: Request, principal: Principal) -> Actor:
    return Actor(by=f"web:{request.state.session_user.username}", role=principal.role)


@router.get("/planner/redraw")
@public
def redraw_form(request: Request, principal: PagePrincipal, community: str = ""):
    """Pick a community; then its grids (to lock), the band by kind and minimal change."""
    require_page_role(principal, "planner")
    communities = _communities(principal)
    chosen = community if community in dict(communities) else ""
    grids = uc.before_grids(principal.engine, chosen) if chosen else None
    kind = grids["kind"].mode().iloc[0] if grids is not None and len(grids) else "urban"
    drafts = draft_store.list_drafts(principal.engine, frozenset({chosen}) if chosen else principal.community_codes())
    return render(request, "planner/redraw.html", page="planner", title="网格调整", communities=communities,
                  chosen=chosen, names=dict(communities), grids=grids, band=grid_band(kind), kind=kind,
                  drafts=drafts)


def _band(band_min: int | None, band_max: int | None) -> list[int] | None:
    if band_min is None and band_max is None:
        return None
    if band_min is None or band_max is None or not 0 < band_min <= band_max:
        raise PageError(400, "户数标准要填最少和最多户数，且最少不大于最多。")
    return [band_min, band_max]


@router.post("/planner/redraw")
@public
def start_redraw(request: Request, principal: PagePrincipal,
                 community: Annotated[str, Form(min_length=1, max_length=100)],
                 locked: Annotated[list[str] | None, Form()] = None,
                 band_min: Annotated[int | None, Form(ge=1, le=100000)] = None,
                 band_max: Annotated[int | None, Form(ge=1, le=100000)] = None,
                 minimal_change: Annotated[str, Form()] = "",
                 name: Annotated[str, Form(max_length=100)] = ""):
    """Queue the redraw of one community and show its progress page."""
    require_page_role(principal, "planner")
    if community not in dict(_communities(principal)):
        raise PageError(404, NOT_FOUND)
    known = set(uc.before_grids(principal.engine, community)["grid_code"])
    user = request.state.session_user.username
    try:
        job_id = enqueue_redraw(str(principal.engine.url.render_as_string(hide_password=False)), community, user,
                                name=name.strip() or f"{community} 调整草案", locked=sorted(set(locked or ()) & known),
                                band=_band(band_min, band_max), minimal_change=minimal_change == "on",
                                who=staff(principal))
    except jobs.RegionBusy:
        raise PageError(409, f"社区 {community} 已有一个计算任务在排队，请等它完成。") from None
    return RedirectResponse(f"/planner/redraw/jobs/{job_id}", status_code=303)


def _job(principal: Principal, job_id: int) -> dict:
    require_page_role(principal, "planner")
    row = get_progress(principal.engine, job_id)
    if row is None or row["kind"] != REDRAW_KIND or not principal.covers_code(row["region"]):
        raise PageError(404, NOT_FOUND)
    return row


@router.get("/planner/redraw/jobs/{job_id}")
@public
def redraw_job_page(request: Request, principal: PagePrincipal, job_id: int):
    """The redraw's progress (refreshed by app.js); a link to the draft when done."""
    job = _job(principal, job_id)
    return render(request, "planner/redraw_job.html", page="planner", title=f"网格调整任务 #{job_id}", job=job,
                  state_labels=STATE_LABELS, steps=REDRAW_STEPS)


@router.get("/planner/redraw/jobs/{job_id}/fragment")
@public
def redraw_job_fragment(request: Request, principal: PagePrincipal, job_id: int):
    """Only the progress block, for polling."""
    return render(request, "planner/_redraw_job.html", job=_job(principal, job_id), state_labels=STATE_LABELS)


def _draft_context(request: Request, principal: Principal, draft: dict) -> dict:
    names = dict(_communities(principal))
    after = uc.after_grids(principal.engine, draft)
    others = [d for d in draft_store.list_drafts(principal.engine, frozenset({draft["community_code"]}))
              if d["draft_id"] != draft["draft_id"]]
    return {"draft": draft, "after": after, "community_name": names.get(draft["community_code"], ""),
            "summary": draft["summary"], "others": others, "page": "planner"}


@router.get("/planner/drafts/{draft_id}")
@public
def draft_page(request: Request, principal: PagePrincipal, draft_id: int, other: int | None = None):
    """Before / after maps, the grids table, the editor, compare, commit and exports."""
    draft = _draft(principal, draft_id)
    context = _draft_context(request, principal, draft)
    if other is not None:
        context["compare"] = uc.compare_drafts(_draft(principal, other), draft)
        context["other_id"] = other
    return render(request, "planner/draft.html", title=f"调整草案 #{draft_id}", **context)


@router.post("/planner/drafts/{draft_id}/commit")
@public
def commit(request: Request, principal: PagePrincipal, draft_id: int):
    """Apply the draft in one transaction; a refusal (409) is shown in Chinese and nothing is written."""
    draft = _draft(principal, draft_id)
    if draft.get("committed_at") is not None:
        raise PageError(409, "这个草案已经提交过了。")

    def authorise(rows):
        if not all(principal.covers(community_code=r["community_code"]) for r in rows):
            raise PageError(404, NOT_FOUND)

    try:
        done = uc.commit_draft(principal.engine, draft, _actor(request, principal), authorise)
    except EditRefused as e:
        context = _draft_context(request, principal, draft)
        return render(request, "planner/draft.html", status_code=409, title=f"调整草案 #{draft_id}",
                      refusal=REFUSALS.get(e.reason, "不能提交。"), refused_grids=e.grids, **context)
    return render(request, "planner/committed.html", page="planner", title="调整已提交", draft=draft, done=done)


@router.get("/planner/drafts/{draft_id}/export.{fmt}")
@public
def export_grids(request: Request, principal: PagePrincipal, draft_id: int, fmt: str):
    """The draft's grids as GeoJSON, GeoPackage or a zipped Shapefile (WGS84)."""
    draft = _draft(principal, draft_id)
    grids = uc.after_grids(principal.engine, draft)
    try:
        body, media, suffix = draft_exports.grids_file(grids, fmt)
    except ValueError:
        raise PageError(404, NOT_FOUND) from None
    return Response(body, media_type=media,
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''draft-{draft_id}-grids{suffix}"})


@router.get("/planner/drafts/{draft_id}/changes.xlsx")
@public
def export_changes(request: Request, principal: PagePrincipal, draft_id: int):
    """Every household the draft moves (户编号, grid today, grid in the draft) as Excel."""
    draft = _draft(principal, draft_id)
    before = uc.before_grids(principal.engine, draft["community_code"])
    names = dict(before[["grid_code", "name"]].itertuples(index=False))
    changes = uc.household_changes(draft, uc.todays_assignment(principal.engine, draft["community_code"]))
    return Response(draft_exports.changes_workbook(changes, names), media_type=draft_exports.XLSX,
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''draft-{draft_id}-changes.xlsx"})
