"""The leaders' 需求清单 / 资源清单 page (``/needs``): a community's open needs beside its members' skills.

Role leader (admin too), community inside the user's regions (otherwise the one 404 page of a missing
one); members' names are masked unless role and region allow and every unmasked read is audited
(``api.auth.present_pii``). Times in China time; distances metres.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from api.auth import present_pii, public
from api.usecases import needs as uc
from api.web.pages import NOT_FOUND, PageError, PagePrincipal
from api.web.render import ROLE_NAMES, render

router = APIRouter(include_in_schema=False)

TITLE = "需求清单 · 资源清单"
SKILL_WORDS = {"不限": "不限技能"}


@router.get("/needs")
@public
def needs_page(request: Request, principal: PagePrincipal,
               community: str | None = Query(None, max_length=100)):
    """A community's open needs (matched members or 缺口) and its members' skills, side by side."""
    if not principal.has_role("leader"):
        raise PageError(403, f"您的角色（{ROLE_NAMES.get(principal.role, principal.role)}）不能打开这个页面。")
    engine = principal.engine
    chosen, choices = uc.pick_community(engine, principal.community_codes(), community)
    if chosen is None and community:
        raise PageError(404, NOT_FOUND)
    board = uc.needs_board(engine, chosen) if chosen else None
    names = {}
    if board is not None:
        board.members = present_pii(engine, principal, "members", board.members, "member_id")
        board.others = present_pii(engine, principal, "members", board.others, "member_id")
        names = {m["member_id"]: m for m in board.members + board.others}
    return render(request, "needs/board.html", page="needs", title=TITLE, board=board, choices=choices,
                  chosen=chosen, names=names, skill_words=SKILL_WORDS, region_names=request.state.region_names)
