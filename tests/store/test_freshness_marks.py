"""Which writes mark which cache (migration 0019's ``freshness_mark`` rules), on the real PostGIS.

The tile figures (``grid_figures``, ``h3_counts``) count households, members (every member: 在岗 or not)
and linked households per grid and H3 cell, and show a grid's name, community, kind and branch. A write
that changes none of those — a member going 在岗/离岗, a phone corrected, a link run's summary — must
leave them both correct and not stale; a write that changes one of them marks them, and the rebuild
gives the live counts. The migration upgrades, downgrades to exactly the 0018 functions and triggers,
and upgrades again.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from geodata.store import cell_counts, epochs, grid_figures
from tests.web.conftest import _h3, seed_region


@pytest.fixture()
def built(engine):
    """The seeded region with the tile figures built and every cache's marks consumed."""
    seed_region(engine)
    grid_figures.refresh(engine)
    epochs.current_epoch(engine, epochs.COVERAGE)
    epochs.current_epoch(engine, epochs.INCIDENT_STATS)
    return engine


def _stale(engine, cache) -> bool:
    with engine.connect() as c:
        return epochs.is_stale(c, cache)


def _figures(engine) -> dict:
    with engine.connect() as c:
        return {r[0]: tuple(r[1:]) for r in c.execute(sa.text(
            "SELECT grid_code, households, members, linked_households, name, community_name, kind, has_branch "
            "FROM grid_figures"))}


def _live_figures(engine) -> dict:
    with engine.connect() as c:
        return {r[0]: tuple(r[1:]) for r in c.execute(sa.text("""
            SELECT g.grid_code,
                   (SELECT count(*) FROM households h WHERE h.grid_code = g.grid_code),
                   (SELECT count(*) FROM members m WHERE m.grid_code = g.grid_code),
                   (SELECT count(*) FROM households h JOIN links l USING (household_id)
                      JOIN link_runs r ON r.run_id = l.run_id AND r.is_current WHERE h.grid_code = g.grid_code),
                   g.name, c.name, g.kind, g.has_branch
            FROM grids g LEFT JOIN communities c ON c.code = g.community_code"""))}


def _cells(engine) -> dict:
    with engine.connect() as c:
        return {(layer, r, cell, g): n for layer, r, cell, g, n in c.execute(sa.text(
            "SELECT layer, res, cell, grid_code, n FROM h3_counts"))}


def _live_cells(engine) -> dict:
    out = {}
    with engine.connect() as c:
        for layer in cell_counts.LAYERS:
            rows = c.execute(sa.text(f"SELECT h3, grid_code, count(*) FROM {layer} GROUP BY h3, grid_code")).all()
            out.update({(layer, *k): n for k, n in cell_counts._rolled_up(rows).items()})
    return out


def test_a_member_going_on_and_off_duty_keeps_the_figures_correct_and_fresh(built):
    from geodata.store.incidents import set_available

    figures, cells = _figures(built), _cells(built)
    assert figures == _live_figures(built) and figures["G1"][1] == 1
    assert cells == _live_cells(built) and any(k[0] == "members" for k in cells)
    for available in (False, True, False):  # 离岗, 在岗, 离岗 — as the responder's page switches
        set_available(built, "M1", available)
        for cache in (epochs.GRID_FIGURES, epochs.COVERAGE, epochs.INCIDENT_STATS):
            assert not _stale(built, cache), cache.name
        assert _figures(built) == figures == _live_figures(built)
        assert _cells(built) == cells == _live_cells(built)
    assert grid_figures.ensure_fresh(built) is False  # the next tile rebuilds nothing


def test_a_member_moved_to_another_grid_marks_the_figures_and_the_rebuild_counts_it(built):
    before = _figures(built)
    with built.begin() as c:
        c.execute(sa.text("UPDATE members SET grid_code = 'G2', available = false WHERE member_id = 'M1'"))
    assert _stale(built, epochs.GRID_FIGURES)
    assert grid_figures.ensure_fresh(built) is True
    after = _figures(built)
    assert (before["G1"][1], before["G2"][1]) == (1, 0) and (after["G1"][1], after["G2"][1]) == (0, 1)
    assert after == _live_figures(built)
    assert _cells(built) == _live_cells(built)
    assert {k[3] for k in _cells(built) if k[0] == "members"} == {"G2"}


#: (write, whether the tile figures count or show what it changes)
WRITES = {
    "member_phone_and_skills": ("UPDATE members SET phone = '13900000000', skills = ARRAY['法律'], min_links = 3", False),
    "member_same_grid": ("UPDATE members SET grid_code = grid_code", False),
    "member_cell": (f"UPDATE members SET h3 = {_h3(31.2052, 121.4915)}", True),
    "household_phone": ("UPDATE households SET phone = '13900000000', name = '改名' WHERE household_id = 'H1'", False),
    "household_grid": ("UPDATE households SET grid_code = 'G2' WHERE household_id = 'H3'", True),
    "household_cell": (f"UPDATE households SET h3 = {_h3(31.205, 121.495)} WHERE household_id = 'H3'", True),
    "link_run_summary": ("UPDATE link_runs SET summary = '{\"n\": 2}', params = '{\"min\": 5}'", False),
    "link_run_retired": ("UPDATE link_runs SET is_current = false", True),
    "link_distance": ("UPDATE links SET distance_m = 60, visit_order = 3 WHERE household_id = 'H1'", False),
    "link_moved": ("UPDATE links SET household_id = 'H3' WHERE household_id = 'H2'", True),
    "grid_branch_name": ("UPDATE grids SET branch_name = '第一支部' WHERE grid_code = 'G1'", False),
    "grid_branch": ("UPDATE grids SET has_branch = true WHERE grid_code = 'G2'", True),
    "grid_outline": ("UPDATE grids SET geom = ST_Multi(ST_Translate(geom, 0.000001, 0)) WHERE grid_code = 'G2'", True),
    "grid_name": ("UPDATE grids SET name = '新网格' WHERE grid_code = 'G2'", True),
    "community_street": ("UPDATE communities SET street_code = 'S2' WHERE code = 'C1'", False),
    "community_name": ("UPDATE communities SET name = '新社区' WHERE code = 'C1'", True),
    "household_deleted": ("DELETE FROM households WHERE household_id = 'H3'", True),
    "nothing_deleted": ("DELETE FROM households WHERE household_id = 'nobody'", False),
    "households_truncated": ("TRUNCATE households CASCADE", True),
}


@pytest.mark.parametrize("kind", sorted(WRITES))
def test_a_write_marks_the_figures_exactly_when_it_changes_what_they_count_or_show(built, kind):
    sql, counts = WRITES[kind]
    with built.begin() as c:
        c.execute(sa.text(sql))
    assert _stale(built, epochs.GRID_FIGURES) is counts
    grid_figures.ensure_fresh(built)
    assert _figures(built) == _live_figures(built)  # either way the tile's figures are the live ones
    assert _cells(built) == _live_cells(built)


def test_the_coverage_and_incident_marks_keep_their_rules(built):
    """Unchanged by 0019: coverage counts any change but 在岗/离岗, the incident sums a member's id, name or
    grid and any change of an incident."""
    with built.begin() as c:
        c.execute(sa.text("UPDATE households SET phone = '13900000000' WHERE household_id = 'H1'"))
        c.execute(sa.text("UPDATE members SET skills = ARRAY['医疗']"))
    assert _stale(built, epochs.COVERAGE) and not _stale(built, epochs.INCIDENT_STATS)
    epochs.current_epoch(built, epochs.COVERAGE)
    with built.begin() as c:
        c.execute(sa.text("UPDATE members SET name = '新名字'"))
    assert _stale(built, epochs.COVERAGE) and _stale(built, epochs.INCIDENT_STATS)


@pytest.mark.db
def test_the_migration_upgrades_downgrades_to_the_old_triggers_exactly_and_upgrades_again():
    from conftest import create_database, drop_database

    from geodata.store import migrate

    url = create_database("gridmap_marks")
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        migrate.upgrade(url, "0018_incident_stats_epoch")
        before = _definitions(eng)
        assert {"grid_figures_mark_dirty", "coverage_mark_dirty", "incident_stats_mark_dirty"} <= before["functions"]
        migrate.upgrade(url)
        head = _definitions(eng)
        mark_functions = {f for f in head["functions"] if "mark" in f}
        assert mark_functions == {"freshness_mark"}
        assert sum("freshness_mark(" in t for t in head["triggers"]) == len(before["triggers"] & _marking(before))
        migrate.downgrade(url, "0018_incident_stats_epoch")
        assert _definitions(eng) == before
        migrate.upgrade(url)
        assert _definitions(eng) == head
    finally:
        eng.dispose()
        drop_database(url)


def _marking(defs: dict) -> set[str]:
    return {t for t in defs["triggers"] if "mark_dirty(" in t or "mark_members(" in t}


def _definitions(engine) -> dict:
    """Every trigger's definition, every plpgsql function's source, the mark tables' columns."""
    with engine.connect() as c:
        triggers = set(c.execute(sa.text(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal AND tgparentid = 0")).scalars())
        functions = dict(c.execute(sa.text(
            "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "JOIN pg_language l ON l.oid = p.prolang WHERE n.nspname = 'public' AND l.lanname = 'plpgsql'")).all())
        columns = set(c.execute(sa.text(
            "SELECT table_name || '.' || column_name FROM information_schema.columns "
            "WHERE table_name LIKE '%\\_dirty' OR table_name LIKE '%\\_epoch'")).scalars())
    return {"triggers": triggers, "functions": set(functions), "sources": set(functions.values()), "columns": columns}
