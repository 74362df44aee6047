"""Manual edits of a redraw draft on a real PostGIS: move H3 cells into a grid (figures equal
``preview_edit``'s), undo restores the stored state exactly, redo re-applies it, and the stack survives
a reopen; committing audits the before/after and the change list."""

from __future__ import annotations

import h3
import pytest
import sqlalchemy as sa

from api.usecases import drafts as uc
from api.usecases.drafts import DraftControls, create_draft, open_draft
from geodata.store.importer import Actor
from gridmap.districting import preview_edit
from tests.store.test_drafts import community  # noqa: F401  (the fixture: C1 with grids A and B)


def _boundary_cell(engine, draft, into: str) -> str:
    """A cell with households, in a grid that shares a boundary with ``into``, touching ``into``."""
    cells = uc.draft_cells(engine, draft)
    target = draft["grids"].set_index("grid_code").geometry[into]
    near = cells[(cells["grid_code"] != into) & (cells["households"] > 0) & cells.geometry.intersects(target.buffer(1e-5))]
    return str(near.sort_values("households", ascending=False)["cell"].iloc[0])


@pytest.fixture()
def draft(community):  # noqa: F811
    draft_id = create_draft(community, "C1", DraftControls(locked=("B",)), name="方案", created_by="test")
    return open_draft(community, draft_id, None)


def test_cells_cover_the_draft_at_res_10(community, draft):  # noqa: F811
    cells = uc.draft_cells(community, draft)
    assert len(cells) > 0 and all(h3.get_resolution(c) == uc.EDIT_RES for c in cells["cell"])
    assert cells["households"].sum() == len(draft["assignment"])  # every household in one cell
    assert set(cells["grid_code"]) <= set(draft["grids"]["grid_code"])


def test_edit_undo_redo_and_reopen(community, draft):  # noqa: F811
    into = next(c for c in draft["grids"]["grid_code"] if c != "B")
    cell = _boundary_cell(community, draft, into)
    expected = preview_edit(draft["grids"], uc.draft_households(community, draft), into, cells=[cell],
                            locked=uc.draft_locked(draft))
    original_grids = draft["grids"].sort_values("grid_code").reset_index(drop=True)
    original_assignment = dict(draft["assignment"])

    edited = uc.apply_draft_edit(community, draft, into, [cell])
    reopened = open_draft(community, draft["draft_id"], None)
    assert reopened["edit_pos"] == 1 and len(reopened["edits"]) == 1
    moved = set(expected.moved["household_id"])
    assert moved and all(reopened["assignment"][h] == into for h in moved)
    row = reopened["grids"].set_index("grid_code").loc[into]
    want = expected.grids.set_index("grid_code").loc[into]
    assert row["households"] == want["households"] and row["polsby_popper"] == pytest.approx(want["polsby_popper"])
    assert reopened["summary"] == edited["summary"]
    assert reopened["summary"] == uc.draft_figures(reopened["grids"], reopened["assignment"],
                                                    uc.todays_assignment(community, "C1"))

    undone = uc.undo_draft_edit(community, reopened)
    again = open_draft(community, draft["draft_id"], None)
    assert again["assignment"] == original_assignment and again["edit_pos"] == 0 and len(again["edits"]) == 1
    back = again["grids"].sort_values("grid_code").reset_index(drop=True)
    assert list(back["grid_code"]) == list(original_grids["grid_code"])
    assert all(a.equals_exact(b, 1e-12) for a, b in zip(back.geometry, original_grids.geometry))
    assert undone["summary"] == draft["summary"]
    with pytest.raises(uc.EditNotPossible):
        uc.undo_draft_edit(community, again)

    redone = uc.redo_draft_edit(community, again)
    assert redone["edit_pos"] == 1 and all(redone["assignment"][h] == into for h in moved)
    with pytest.raises(uc.EditNotPossible):
        uc.redo_draft_edit(community, open_draft(community, draft["draft_id"], None))


def test_commit_audits_before_after_and_changes(community, draft):  # noqa: F811
    changes = uc.household_changes(draft, uc.todays_assignment(community, "C1"))
    uc.commit_draft(community, draft, Actor(by="test", role="planner"))
    with community.connect() as c:
        detail, ids = c.execute(sa.text("SELECT detail, ids FROM audit_log WHERE action = 'commit_draft'")).one()
    assert detail["draft_id"] == draft["draft_id"] and len(detail["before"]) == 2
    assert len(detail["after"]) == len(draft["grids"]) and len(detail["changes"]) == len(changes) == len(ids)
    with pytest.raises(ValueError):  # a committed draft is not edited any more
        uc.apply_draft_edit(community, open_draft(community, draft["draft_id"], None), "B",
                            [_boundary_cell(community, draft, "B")])


def test_after_grids_one_piece_multipolygons_are_contiguous_and_new_grids_unnamed(community, draft):  # noqa: F811
    after = uc.after_grids(community, draft).set_index("grid_code")
    assert after.geometry["B"].geom_type == "MultiPolygon" and bool(after.loc["B", "contiguous"])  # stored as one part
    assert after.loc["B", "name"] == "乙网格"
    new = [c for c in after.index if c not in ("A", "B")]
    assert new and all(after.loc[c, "name"] is None for c in new)  # not NaN: pages show 新网格
