"""Residents' tickets in the real PostGIS: created with photos (EXIF gone), followed by code or link,
rated once when closed, all or nothing.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.web.conftest import seed_region

from ticket_cases import counts, gps_of, jpeg_with_gps


pytestmark = pytest.mark.db

PHONE = "138-0013-8000"


@pytest.fixture()
def region(engine):
    seed_region(engine)
    return engine


def _report(engine, tmp_path, **kw):
    from geodata.store import tickets

    args = {"lon": 121.4812, "lat": 31.2051, "category": "环境卫生", "description": "楼道堆满杂物", "address": "中山路 1 号",
                "phone": PHONE, "photos": [tickets.clean_photo(jpeg_with_gps())], "upload_dir": tmp_path}
    return tickets.create_ticket(engine, **{**args, **kw})


def test_report_is_routed_with_photo_stripped_and_no_phone_in_clear(region, tmp_path):
    from geodata.store import incidents, tickets

    assert gps_of(jpeg_with_gps())  # the fixture really carries a position
    made = _report(region, tmp_path)
    assert len(made["ticket"]) == 12 and made["ticket"].isdigit()
    inc = incidents.get_incident(region, made["incident_id"])
    assert (inc["grid_code"], inc["community_code"], inc["street_code"]) == ("G1", "C1", "S1")
    assert [p["member_id"] for p in inc["proposed"]] == ["M1"]
    photos = tickets.ticket_photos(region, made["incident_id"])
    assert len(photos) == 1 and photos[0]["content_type"] == "image/jpeg"
    assert gps_of((tmp_path / photos[0]["path"]).read_bytes()) == {}
    with region.connect() as c:
        row = c.execute(sa.text("SELECT * FROM incidents WHERE incident_id = :i"), {"i": made["incident_id"]}).first()
    stored = " ".join(str(v) for v in row)
    assert "13800138000" not in stored and "8000" not in stored.replace(made["ticket"], "")


def test_follow_needs_the_last_four_digits_or_the_link(region, tmp_path):
    from geodata.store import tickets

    made = _report(region, tmp_path)
    assert tickets.find_ticket(region, made["ticket"], code="8000")["incident_id"] == made["incident_id"]
    assert tickets.find_ticket(region, made["ticket"], key=made["follow_key"]) is not None
    assert tickets.find_ticket(region, made["ticket"], code="8001") is None
    assert tickets.find_ticket(region, made["ticket"], key="guess") is None
    assert tickets.find_ticket(region, made["ticket"]) is None
    assert tickets.find_ticket(region, "000000000000", code="8000") is None
    no_phone = _report(region, tmp_path, phone=None)
    assert tickets.find_ticket(region, no_phone["ticket"], code="") is None
    assert tickets.find_ticket(region, no_phone["ticket"], key=no_phone["follow_key"]) is not None


def test_a_failing_report_leaves_no_incident_and_no_file(region, tmp_path):
    before = counts(region)
    with pytest.raises(sa.exc.DataError):
        _report(region, tmp_path, description="bad \x00 text")  # PostgreSQL refuses NUL in the UPDATE
    assert counts(region) == before
    assert list((tmp_path / "tickets").iterdir()) == []


def test_rating_once_when_closed_and_low_ratings_are_flagged(region, tmp_path):
    from geodata.store import incidents, tickets
    from gridmap.dispatch import IllegalTransition

    made = _report(region, tmp_path)
    iid = made["incident_id"]
    with pytest.raises(IllegalTransition):
        tickets.rate_ticket(region, iid, 5)
    for action in ("assign", "accept", "close"):
        incidents.transition(region, iid, action)
    with pytest.raises(ValueError):
        tickets.rate_ticket(region, iid, 6)
    assert tickets.rate_ticket(region, iid, 1, "没人来") == {"status": "rated", "rating": 1, "flagged": True}
    with pytest.raises(IllegalTransition):
        tickets.rate_ticket(region, iid, 5)
    row = tickets.find_ticket(region, made["ticket"], code="8000")
    assert (row["rating"], row["rating_comment"], row["flagged"]) == (1, "没人来", True)
    history = tickets.ticket_history(region, iid)
    assert [h["action"] for h in history] == ["report", "assign", "accept", "close", "rate"]
    assert {h["member_surname"] for h in history[1:]} == {"王"}  # 王五 → 王 only


@pytest.mark.parametrize("data,problem", [(b"GIF89a" + b"0" * 50, "不是 JPEG"), (b"\xff\xd8\xff" + b"0" * 50, "无法读取")])
def test_bad_photos_are_refused_by_content(data, problem):
    from geodata.store import tickets

    with pytest.raises(tickets.PhotoError, match=problem):
        tickets.clean_photo(data, label="第 1 张照片")
    with pytest.raises(tickets.PhotoError, match="太大"):
        tickets.clean_photo(jpeg_with_gps(), max_bytes=100)
