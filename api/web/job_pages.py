"""Background-job pages: start a link recompute for a region, and its progress (survives reloads).

Only leaders and planners may start a recompute (as ``POST /links/recompute``); anyone may follow a
job of their own regions. A job or region outside the user's regions answers the same 404 as a
missing one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from api import jobs
from api.auth import Principal, public
from api.usecases.audit import staff
from api.web.pages import NOT_FOUND, PageError, PagePrincipal
from api.web.render import render
from geodata.store import auth as auth_store
from geodata.store.jobs import STATE_LABELS, get_progress

router = APIRouter(include_in_schema=False)

RECOMPUTE_ROLES = ("leader", "planner")


def _visible_job(principal: Principal, job_id: int) -> dict:
    row = get_progress(principal.engine, job_id)
    if row is None or not principal.covers_code(row["region"]):
        raise PageError(404, NOT_FOUND)
    return row


@router.post("/jobs/recompute")
@public
def start_recompute(request: Request, principal: PagePrincipal,
                    region: Annotated[str, Form(min_length=1, max_length=100)]):
    """Queue a recompute of the region's 包片联户 links (audited) and show its progress page."""
    if not principal.has_role(*RECOMPUTE_ROLES):
        raise PageError(403, "只有领导和规划员可以重新计算联户。")
    region = region.strip()
    if not principal.covers_code(region) or auth_store.region_kind(principal.engine, region) is None:
        raise PageError(404, f"区域 {region} 不存在，或不在您的管辖范围内。")
    try:
        job_id = jobs.enqueue_recompute(str(principal.engine.url.render_as_string(hide_password=False)), region,
                                        requested_by=request.state.session_user.username, who=staff(principal))
    except jobs.RegionBusy:
        raise PageError(409, f"区域 {region} 已有一个计算任务在排队，请等它完成。") from None
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.get("/jobs/{job_id}")
@public
def job_page(request: Request, job_id: int, principal: PagePrincipal):
    """A job's page: its progress fragment, refreshed by /static/js/app.js while it runs."""
    job = _visible_job(principal, job_id)
    return render(request, "job.html", title=f"后台任务 #{job_id}", job=job, state_labels=STATE_LABELS,
                  region_names=request.state.region_names)


@router.get("/jobs/{job_id}/fragment")
@public
def job_fragment(request: Request, job_id: int, principal: PagePrincipal):
    """Only the progress block of a job (HTML), for polling."""
    job = _visible_job(principal, job_id)
    return render(request, "_job.html", job=job, state_labels=STATE_LABELS)
