"""JSON routes of the redraw editor (网格调整草案): a draft's grids before and after, its H3 cells, and the
manual edits — preview (nothing saved), apply, undo, redo.

Planners (and admin) only; a draft of a community outside the caller's regions answers the same 404
as a missing one. Drafts hold no personal data (household ids and grid codes only); every write is
audited (``draft_edit`` / ``draft_undo`` / ``draft_redo``). GeoJSON is WGS84.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from api.auth import Principal, not_found, require_roles
from api.usecases import drafts as uc
from geodata.jsonenc import to_plain
from geodata.store.importer import Actor

router = APIRouter(tags=["planner"])

Planner = Annotated[Principal, Depends(require_roles("planner"))]
GEOJSON = "application/geo+json"


class EditIn(BaseModel):
    """Move H3 cells (res 10, as text) of the draft into one of its grids."""

    to_grid: str = Field(..., min_length=1, max_length=100, description="Code of the receiving grid.")
    cells: list[str] = Field(..., min_length=1, max_length=2000, description="H3 indexes (text).")
    whole_buildings: bool = Field(False, description="Take every building (楼栋) the cells would split whole.")


def _draft(principal: Principal, draft_id: int) -> dict:
    try:
        return uc.open_draft(principal.engine, draft_id, principal.community_codes())
    except uc.DraftMissing:
        raise not_found() from None


def _actor(request: Request, principal: Principal) -> Actor:
    user = getattr(request.state, "session_user", None)
    by = f"web:{user.username}" if user is not None else f"token:{principal.token_id}"
    return Actor(by=by, token_id=principal.token_id or None, role=principal.role)


def _geojson(frame) -> Response:
    return Response(frame.to_json(drop_id=True), media_type=GEOJSON)


def _state(draft: dict) -> dict:
    return {"draft_id": draft["draft_id"], "summary": to_plain(draft["summary"]), "edit_pos": draft["edit_pos"],
            "edits": len(draft["edits"]), "committed": draft.get("committed_at") is not None}


@router.get("/drafts/{draft_id}/grids.geojson")
def draft_grids(draft_id: int, principal: Planner):
    """The draft's grids (after): code, name, households, band, in_band, contiguous, moved, status."""
    return _geojson(uc.after_grids(principal.engine, _draft(principal, draft_id)))


@router.get("/drafts/{draft_id}/before.geojson")
def draft_before(draft_id: int, principal: Planner):
    """Today's grids of the draft's community (before), with today's household counts."""
    return _geojson(uc.before_grids(principal.engine, _draft(principal, draft_id)["community_code"]))


@router.get("/drafts/{draft_id}/cells.geojson")
def draft_cells(draft_id: int, principal: Planner):
    """The H3 cells (res 10) a planner can move, each with its grid in the draft and household count."""
    return _geojson(uc.draft_cells(principal.engine, _draft(principal, draft_id)))


def _refusal(e: Exception) -> HTTPException:
    return HTTPException(422, detail=str(e))


@router.post("/drafts/{draft_id}/preview")
def preview(draft_id: int, body: EditIn, principal: Planner):
    """What the move would do (nothing saved): the touched grids' counts, band, contiguity, compactness,
    and the buildings it would split. 422 with a Chinese message naming the grids when it would change
    a locked grid."""
    draft = _draft(principal, draft_id)
    try:
        result = uc.preview_draft_edit(principal.engine, draft, body.to_grid, body.cells,
                                       whole_buildings=body.whole_buildings)
    except (uc.EditNotPossible, ValueError) as e:
        raise _refusal(e) from None
    return to_plain(uc.describe_preview(principal.engine, draft, result))


def _written(principal: Principal, draft_id: int, change) -> dict:
    draft = _draft(principal, draft_id)
    if draft.get("committed_at") is not None:
        raise HTTPException(409, detail="草案已提交，不能再修改。")
    try:
        return _state(change(draft))
    except (uc.EditNotPossible, ValueError) as e:
        raise _refusal(e) from None


@router.post("/drafts/{draft_id}/edits")
def apply_edit(request: Request, draft_id: int, body: EditIn, principal: Planner):
    """Apply the move and push it on the draft's undo stack (the redo tail is dropped); refused (422, nothing
    written) when it would change a locked grid or split a building."""
    return _written(principal, draft_id, lambda d: uc.apply_draft_edit(
        principal.engine, d, body.to_grid, body.cells, _actor(request, principal), whole_buildings=body.whole_buildings))


@router.post("/drafts/{draft_id}/undo")
def undo(request: Request, draft_id: int, principal: Planner):
    """Take back the last applied edit."""
    return _written(principal, draft_id, lambda d: uc.undo_draft_edit(principal.engine, d, _actor(request, principal)))


@router.post("/drafts/{draft_id}/redo")
def redo(request: Request, draft_id: int, principal: Planner):
    """Apply the next undone edit again."""
    return _written(principal, draft_id, lambda d: uc.redo_draft_edit(principal.engine, d, _actor(request, principal)))
