"""The cached sums of closed incidents (:mod:`geodata.store.stats_cache`) in the real PostGIS test database:
kept between calls, and never older than a committed write to ``incidents`` — an update, an insert, a delete,
a TRUNCATE — nor served across a database emptied and filled again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from geodata.store import stats, stats_cache
from tests.store.test_stats import AT, _history, _t
from tests.web.conftest import seed_region


@pytest.fixture()
def histories(engine):
    """Four closed incidents in grid G1 (two rated 5 and 4) and one open."""
    seed_region(engine)
    _history(engine, "A", "矛盾纠纷", _t(9, 10), _t(9, 15), _t(13, 18), 5)
    _history(engine, "B", "矛盾纠纷", _t(9, 10), _t(12, 9), _t(14, 9), 3)
    _history(engine, "C", "环境卫生", _t(12, 10), _t(12, 12), _t(14, 10), 4)
    _history(engine, "D", "矛盾纠纷", _t(16, 10), _t(16, 12), _t(21, 15))
    _history(engine, "E", "环境卫生", _t(20, 8), assigned=_t(20, 9))
    return engine


def _city(engine) -> dict:
    return stats.incident_counts(engine, None, at=AT)


def _fresh(engine) -> dict:
    """The figures summed with nothing kept."""
    stats_cache.clear()
    return _city(engine)


def test_closed_sums_are_kept_between_calls(histories):
    stats_cache.clear()
    first = _city(histories)
    epoch = stats_cache.current_epoch(histories)
    kept = [v for k, v in stats_cache._entries.items() if "incident_counts" in k]
    assert len(kept) == 1 and kept[0][0] == epoch and int(kept[0][1]["incidents"].sum()) == 4  # A-D are closed
    assert _city(histories) == first
    assert stats_cache.current_epoch(histories) == epoch  # a read marks nothing


def test_an_update_of_a_closed_incident_is_seen_at_once(histories):
    _city(histories)
    with histories.begin() as c:
        c.execute(sa.text("UPDATE incidents SET rating = 1 WHERE incident_id = 'A'"))
    after = _city(histories)
    assert after["total"][0]["satisfied"] == 1  # C only; A was 5
    assert after == _fresh(histories)


def test_an_insert_and_a_delete_are_seen_at_once(histories):
    before = _city(histories)
    _history(histories, "G", "环境卫生", _t(13, 8), _t(13, 9), _t(13, 12), 5)
    added = _city(histories)
    assert added["total"][0]["incidents"] == before["total"][0]["incidents"] + 1
    assert added["total"][0]["closed"] == before["total"][0]["closed"] + 1
    assert added == _fresh(histories)
    with histories.begin() as c:
        c.execute(sa.text("DELETE FROM incidents WHERE incident_id IN ('A', 'G')"))
    removed = _city(histories)
    assert removed["total"][0]["closed"] == before["total"][0]["closed"] - 1
    assert removed == _fresh(histories)


def test_an_uncommitted_write_is_not_seen_and_its_commit_is(histories):
    before = _city(histories)
    with histories.connect() as writer:
        writer.execute(sa.text("UPDATE incidents SET rating = 1 WHERE incident_id = 'A'"))
        assert _city(histories) == before  # still open in the writer's transaction
        writer.commit()
    assert _city(histories)["total"][0]["satisfied"] == before["total"][0]["satisfied"] - 1


def test_emptied_tables_start_a_new_epoch(histories):
    from tests.conftest import truncate_all

    _city(histories)
    truncate_all(histories)
    assert _city(histories)["total"][0]["incidents"] == 0


def test_a_renamed_member_is_seen_at_once_and_a_shift_change_keeps_the_sums(histories):
    stats_cache.clear()
    assert stats.member_names(histories, ["M1"])["M1"]["name"] is not None
    epoch = stats_cache.current_epoch(histories)
    with histories.begin() as c:
        c.execute(sa.text("UPDATE members SET available = NOT available WHERE member_id = 'M1'"))
    assert stats_cache.current_epoch(histories) == epoch  # 在岗/离岗 changes no name and no sum
    with histories.begin() as c:
        c.execute(sa.text("UPDATE members SET name = '新名字' WHERE member_id = 'M1'"))
    assert stats.member_names(histories, ["M1"])["M1"]["name"] == "新名字"
