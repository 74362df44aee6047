"""包片联户 link runs in PostGIS: recompute swaps runs, saving is all-or-nothing."""

from __future__ import annotations

import pandas as pd
import psycopg
import pytest

from linkage_cases import _current_runs, _store_region


@pytest.mark.db
def test_store_recompute_swaps_runs_and_is_stable(engine):
    import sqlalchemy as sa

    from geodata.store import links as store

    households, members, grids = _store_region(engine)
    saved, result = store.recompute(engine, "C1")
    assert saved.links == result.summary["linked"] > 0
    assert _current_runs(engine) == [(saved.run_id, "C1")]
    again, result2 = store.recompute(engine, "C1")
    assert again.run_id != saved.run_id
    assert result2.summary["links_changed"] == 0  # unchanged data → no reshuffle
    assert _current_runs(engine) == [(again.run_id, "C1")]
    with engine.connect() as c:
        old = c.execute(sa.text("SELECT household_id, member_id FROM links WHERE run_id = :r ORDER BY 1"),
                        {"r": saved.run_id}).all()
        new = c.execute(sa.text("SELECT household_id, member_id FROM links WHERE run_id = :r ORDER BY 1"),
                        {"r": again.run_id}).all()
    assert old == new
    # A grid-level run supersedes the community run for that grid's households only.
    g0, _ = store.recompute(engine, "G0")
    with engine.connect() as c:
        dup = c.execute(sa.text("SELECT household_id FROM links l JOIN link_runs r ON r.run_id = l.run_id "
                                "WHERE r.is_current GROUP BY household_id HAVING count(*) > 1")).all()
        total = c.execute(sa.text("SELECT count(*) FROM links l JOIN link_runs r ON r.run_id = l.run_id "
                                  "WHERE r.is_current")).scalar()
    assert dup == [] and g0.superseded_links > 0
    assert total == result2.summary["linked"]  # G0 re-linked the same way (stability)


@pytest.mark.db
def test_store_save_is_all_or_nothing(engine):
    from geodata.store import links as store

    _store_region(engine)
    saved, result = store.recompute(engine, "C1")
    bad = pd.concat([result.links, result.links.iloc[:1]], ignore_index=True)  # duplicate household → PK error
    with pytest.raises(psycopg.errors.UniqueViolation):
        store.save_run(engine, "C1", bad, {}, {})
    assert _current_runs(engine) == [(saved.run_id, "C1")]
    assert len(store.member_households(engine, result.links["member_id"].iloc[0])) > 0
