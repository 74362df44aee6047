"""Hand edits of a draft on a real PostGIS never change a locked grid (锁定网格) and never split a
building's households (楼栋) between grids; a refused edit leaves every table and the draft as they were."""

from __future__ import annotations

import h3
import pytest
import sqlalchemy as sa

from api.usecases import drafts as uc
from api.usecases.drafts import DraftControls, create_draft, open_draft
from tests.store.test_drafts import community  # noqa: F401  (the fixture: C1 with grids A and B)

TABLES = ("grids", "households", "redraw_drafts", "audit_log", "links", "members")


def _state(engine) -> dict:
    """Row counts, and the drafts' stored grids, assignment, edit stack and position."""
    with engine.connect() as c:
        out = {t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
        out["drafts"] = c.execute(sa.text(
            "SELECT string_agg(md5(grids::text) || md5(assignment::text) || md5(edits::text) || edit_pos, ';' "
            "ORDER BY draft_id) FROM redraw_drafts")).scalar_one()
        out["grid_geoms"] = c.execute(sa.text("SELECT string_agg(grid_code || md5(ST_AsBinary(geom)), ';' "
                                              "ORDER BY grid_code) FROM grids")).scalar_one()
    return out


@pytest.fixture()
def draft(community):  # noqa: F811
    draft_id = create_draft(community, "C1", DraftControls(locked=("B",)), name="锁定乙", created_by="test")
    return open_draft(community, draft_id, None)


def _cells(engine, draft, grid: str, touching: str | None = None):
    cells = uc.draft_cells(engine, draft)
    mine = cells[(cells["grid_code"] == grid) & (cells["households"] > 0)]
    if touching is not None:
        other = draft["grids"].set_index("grid_code").geometry[touching]
        mine = mine[mine.geometry.intersects(other.buffer(1e-5))]
    return mine.sort_values("cell")


def test_cells_of_locked_grids_are_marked(community, draft):  # noqa: F811
    cells = uc.draft_cells(community, draft)
    assert uc.draft_locked(draft) == {"B"}
    assert set(cells.loc[cells["locked"], "grid_code"]) == {"B"} and not cells.loc[~cells["locked"], "grid_code"].eq("B").any()
    lat, lon = h3.cell_to_latlng(cells["cell"].iloc[0])
    assert (cells["lat"].iloc[0], cells["lon"].iloc[0]) == pytest.approx((lat, lon))


def test_moving_into_or_out_of_a_locked_grid_is_refused_naming_it(community, draft):  # noqa: F811
    free = [c for c in draft["grids"]["grid_code"] if c != "B"]
    into_b = str(_cells(community, draft, free[0], touching="B")["cell"].iloc[0])
    out_of_b = str(_cells(community, draft, "B", touching=free[0])["cell"].iloc[0])
    before = _state(community)
    for attempt in (lambda: uc.preview_draft_edit(community, draft, "B", [into_b]),
                    lambda: uc.apply_draft_edit(community, draft, "B", [into_b]),
                    lambda: uc.preview_draft_edit(community, draft, free[0], [out_of_b]),
                    lambda: uc.apply_draft_edit(community, draft, free[0], [into_b, out_of_b])):
        with pytest.raises(uc.EditLocked) as e:
            attempt()
        assert "乙网格（B）" in str(e.value) and "锁定" in str(e.value) and e.value.codes == ["B"]
    assert _state(community) == before


def test_free_edits_undo_and_redo_keep_the_locked_grid_exactly(community, draft):  # noqa: F811
    free = sorted(c for c in draft["grids"]["grid_code"] if c != "B")
    locked_geom = draft["grids"].set_index("grid_code").geometry["B"]
    b_homes = {h for h, g in draft["assignment"].items() if g == "B"}
    cells = [str(c) for c in _cells(community, draft, free[1], touching=free[0])["cell"].iloc[:2]]
    steps = (lambda: uc.apply_draft_edit(community, draft, free[0], cells),
             lambda: uc.undo_draft_edit(community, open_draft(community, draft["draft_id"], None)),
             lambda: uc.redo_draft_edit(community, open_draft(community, draft["draft_id"], None)))
    for step, pos in zip(steps, (1, 0, 1)):
        state = step()
        stored = open_draft(community, draft["draft_id"], None)
        assert stored["grids"].set_index("grid_code").geometry["B"].equals_exact(locked_geom, 1e-12)
        assert {h for h, g in stored["assignment"].items() if g == "B"} == b_homes
        assert stored["grids"].set_index("grid_code").loc["B", "status"] == "locked"
        assert state["edit_pos"] == stored["edit_pos"] == pos


def label_building(engine, draft, into: str) -> tuple[str, set]:
    """Give 楼栋 "5栋" to the households of one boundary cell of a free grid and their neighbours within
    30 m outside the cell (same grid): one building across a cell edge. Returns the cell and the ids."""
    homes = uc.draft_households(engine, draft).to_crs(32651)
    grid = next(c for c in sorted(draft["grids"]["grid_code"]) if c not in uc.draft_locked(draft) | {into})
    for cell in _cells(engine, draft, grid, touching=into)["cell"]:
        cell_ids = {h for h, p in zip(homes["household_id"], homes.to_crs(4326).geometry)
                    if h3.latlng_to_cell(p.y, p.x, 10) == cell and draft["assignment"][h] == grid}
        inside = homes[homes["household_id"].isin(cell_ids)]
        near = homes[(homes.geometry.distance(inside.geometry.union_all()) < 30)
                     & ~homes["household_id"].isin(cell_ids)
                     & homes["household_id"].map(draft["assignment"]).eq(grid)]
        if len(inside) and len(near):
            ids = cell_ids | set(near["household_id"])
            with engine.begin() as c:
                c.execute(sa.text("UPDATE households SET building = '5栋' WHERE household_id = ANY(:h)"),
                          {"h": sorted(ids)})
            return str(cell), ids
    raise AssertionError("no boundary cell with neighbours outside it")


def test_a_cell_splitting_a_building_is_warned_refused_then_taken_whole(community, draft):  # noqa: F811
    into = sorted(c for c in draft["grids"]["grid_code"] if c != "B")[0]
    cell, ids = label_building(community, draft, into)
    result = uc.preview_draft_edit(community, draft, into, [cell])
    shown = uc.describe_preview(community, draft, result)
    assert [s["building"] for s in shown["split_buildings"]] == ["5栋"]
    assert "会把楼栋拆到不同网格：5栋" in shown["split_message"] and "户留在" in shown["split_message"]
    assert all(g["name"].endswith(f"（{g['grid_code']}）") for g in shown["grids"])  # names beside codes
    before = _state(community)
    with pytest.raises(uc.EditNotPossible) as e:
        uc.apply_draft_edit(community, draft, into, [cell])
    assert "整栋一起移入" in str(e.value) and _state(community) == before

    whole = uc.describe_preview(community, draft, uc.preview_draft_edit(community, draft, into, [cell],
                                                                         whole_buildings=True))
    assert whole["split_buildings"] == [] and whole["buildings_added"] == ["5栋"]
    saved = uc.apply_draft_edit(community, draft, into, [cell], whole_buildings=True)
    assert all(saved["assignment"][h] == into for h in ids) and saved["edits"][-1]["whole_buildings"] is True
