"""geodata.store.audited on the real PostGIS: a write and its audit row commit together or not at all."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from geodata.store.audited import audited

pytestmark = pytest.mark.db

WHO = {"token_id": None, "role": "planner", "member_id": None}


def _rows(engine) -> tuple[int, int]:
    with engine.connect() as c:
        return (c.execute(sa.text("SELECT count(*) FROM streets")).scalar_one(),
                c.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one())


def _street(engine, code: str) -> None:
    with engine.begin() as c:  # a store function's own transaction: a savepoint inside audited()
        c.execute(sa.text("INSERT INTO streets (code, name, geom) VALUES (:c, '测试街道', "
                          "ST_GeomFromText('MULTIPOLYGON(((121 31, 121.01 31, 121.01 31.01, 121 31)))', 4326))"),
                  {"c": code})


def test_the_write_and_its_row_commit_together(engine):
    with audited(engine, WHO, "street_add", "streets") as (tx, entry):
        _street(tx, "S7")
        entry.ids = ["S7"]
    assert _rows(engine) == (1, 1)


def test_a_failure_after_the_write_takes_both(engine):
    with pytest.raises(RuntimeError), audited(engine, WHO, "street_add", "streets") as (tx, entry):
        _street(tx, "S7")
        entry.ids = ["S7"]
        raise RuntimeError("crash between the write and the audit row")
    assert _rows(engine) == (0, 0)


def test_a_block_that_names_no_id_commits_nothing_unless_it_wrote_nothing(engine):
    with pytest.raises(ValueError, match="named no id"), audited(engine, WHO, "street_add", "streets") as (tx, _):
        _street(tx, "S7")
    assert _rows(engine) == (0, 0)
    with audited(engine, WHO, "street_add", "streets") as (_, entry):
        entry.nothing_written()
    assert _rows(engine) == (0, 0)


def test_a_failed_inner_block_rolls_back_to_its_savepoint_only(engine):
    with audited(engine, WHO, "street_add", "streets") as (tx, entry):
        _street(tx, "S7")
        with pytest.raises(sa.exc.IntegrityError):
            _street(tx, "S7")  # duplicate: this block alone is undone, as its own transaction would be
        entry.ids = ["S7"]
    assert _rows(engine) == (1, 1)


def test_nothing_may_open_a_connection_of_its_own(engine):
    with audited(engine, WHO, "street_add", "streets") as (tx, entry):
        assert tx.url == engine.url
        with pytest.raises(AttributeError, match="leave its transaction"):
            tx.raw_connection()
        entry.nothing_written()
