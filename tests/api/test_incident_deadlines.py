"""One deadline rule for every incident: a staff report (``POST /incidents``), a bulk import (``gridmap import
incidents``), a resident's ticket (``/report``) and an Open311 request of the same category get the same two
deadlines from the deployment's deadlines file and holiday calendar; without a deadlines file the policy
defaults stay. Real PostGIS, the real app and the real command line."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from gridmap.dispatch import LOCAL_TZ, WorkCalendar, add_working_days
from tests.web.conftest import seed_region

pytestmark = pytest.mark.db

#: 安全隐患: 4 hours to take it (接单), 2 working days to close it (办结).
DEADLINES = """
[categories."安全隐患"]
respond = { hours = 4 }
complete = { working_days = 2 }
"""
FRIDAY = datetime(2024, 9, 27, 16, tzinfo=LOCAL_TZ)  # Friday before National Day
NATIONAL_DAY = [date(2024, 9, 30)] + [date(2024, 10, d) for d in range(1, 8)]
PLACE = (121.4812, 31.2051)  # inside grid G1 (street S1)


def _soon() -> list[date]:
    """Three days after today (China time): a resident's report made now has holidays ahead of it."""
    today = datetime.now(LOCAL_TZ).date()
    return [today + timedelta(days=n) for n in (1, 2, 3)]


@pytest.fixture()
def files(tmp_path):
    """The deployment's deadlines file and holiday file (National Day 2024 and the next three days)."""
    deadlines = tmp_path / "deadlines.toml"
    deadlines.write_text(DEADLINES, encoding="utf-8")
    holidays = tmp_path / "holidays.csv"
    holidays.write_text("".join(f"{d.isoformat()},holiday\n" for d in NATIONAL_DAY + _soon()), encoding="utf-8")
    return deadlines, holidays, WorkCalendar(frozenset(NATIONAL_DAY + _soon()))


def _app(db_url, tmp_path, **settings):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    return TestClient(create_app(Settings(database_url=db_url, upload_dir=tmp_path / "uploads", **settings)))


@pytest.fixture()
def seeded(engine):
    seed_region(engine)
    return engine


def _staff_report(client, token, reported_at: datetime, category: str = "安全隐患") -> dict:
    answer = client.post("/incidents", headers={"Authorization": f"Bearer {token}"},
                         json={"lon": PLACE[0], "lat": PLACE[1], "category": category,
                               "reported_at": reported_at.isoformat()})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return {k: datetime.fromisoformat(body[k]) for k in ("reported_at", "respond_due_at", "deadline_at")}


def _stored(engine, where: str, **params) -> dict:
    with engine.connect() as c:
        row = c.execute(sa.text(f"SELECT incident_id, reported_at, respond_due_at, deadline_at FROM incidents "
                                f"WHERE {where}"), params).one()
    return dict(row._mapping)


def _dues(inc: dict) -> tuple[datetime, datetime]:
    return inc["respond_due_at"], inc["deadline_at"]


def _import(engine, db_url, tmp_path, monkeypatch, capsys, env: dict[str, str]) -> dict:
    from tests.api.test_corpus import run_cli

    monkeypatch.setenv("GRIDMAP_DATABASE_URL", db_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    csv = tmp_path / "incidents.csv"
    csv.write_text(f"incident_id,lon,lat,category,reported_at\nIMP-1,{PLACE[0]},{PLACE[1]},安全隐患,"
                   f"{FRIDAY:%Y-%m-%d %H:%M}\n", encoding="utf-8")
    code, out = run_cli(["import", "incidents", str(csv)], capsys)
    assert code == 0, out
    return _stored(engine, "incident_id = 'IMP-1'")


def test_an_imported_incident_gets_the_staff_reports_deadlines_across_national_day(
        seeded, db_url, tmp_path, files, monkeypatch, capsys):
    from geodata.store import auth

    deadlines, holidays, _ = files
    imported = _import(seeded, db_url, tmp_path, monkeypatch, capsys,
                       {"GRIDMAP_DEADLINES_FILE": str(deadlines), "GRIDMAP_HOLIDAYS": str(holidays)})
    # Friday 16:00 + 4 h to take it; 2 working days past the weekend and National Day (09-30…10-07) to close it
    assert _dues(imported) == (FRIDAY + timedelta(hours=4), datetime(2024, 10, 9, 16, tzinfo=LOCAL_TZ))
    token = auth.create_token(seeded, "dispatcher", ["S1"], label="deadlines")[1]
    with _app(db_url, tmp_path, deadlines_file=deadlines, holidays=holidays) as client:
        staff = _staff_report(client, token, FRIDAY)
    assert _dues(staff) == _dues(imported)


def test_an_import_without_a_deadlines_file_keeps_the_policy_defaults(seeded, db_url, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GRIDMAP_DEADLINES_FILE", raising=False)
    monkeypatch.delenv("GRIDMAP_HOLIDAYS", raising=False)
    imported = _import(seeded, db_url, tmp_path, monkeypatch, capsys, {})
    # 安全隐患 is an ordinary matter: 24 h on both clocks (一般事项24小时)
    assert _dues(imported) == (FRIDAY + timedelta(hours=24), FRIDAY + timedelta(hours=24))


def _resident_report(client, category: str = "安全隐患") -> str:
    answer = client.post("/report", data={"category": category, "description": "楼道堆放电瓶车",
                                          "lon": str(PLACE[0]), "lat": str(PLACE[1]), "coords": "wgs84"})
    assert answer.status_code == 201, answer.text
    return re.search(r"\d{12}", answer.text).group(0)


def test_a_residents_ticket_and_an_open311_request_get_the_staff_reports_deadlines(seeded, db_url, tmp_path, files):
    from geodata.store import auth

    deadlines, holidays, calendar = files
    token = auth.create_token(seeded, "dispatcher", ["S1"], label="deadlines")[1]
    with _app(db_url, tmp_path, deadlines_file=deadlines, holidays=holidays) as client:
        ticket = _stored(seeded, "ticket = :t", t=_resident_report(client))
        made = client.post("/open311/v2/requests.json", data={
            "api_key": token, "service_code": "004", "description": "消防通道被占",  # 004 = 安全隐患
            "lat": str(PLACE[1]), "long": str(PLACE[0])})
        assert made.status_code == 201, made.text
        request = _stored(seeded, "ticket = :t", t=made.json()[0]["service_request_id"])
        staff = {name: _staff_report(client, token, inc["reported_at"]) for name, inc in
                 (("ticket", ticket), ("open311", request))}
        services = {s["service_name"]: s["description"] for s in client.get("/open311/v2/services.json").json()}
    assert "接单 4 小时内，办结 2 个工作日内" in services["安全隐患"]  # what other systems are told
    assert "接单 24 小时内，办结 24 小时内" in services["环境卫生"]
    for name, inc in (("ticket", ticket), ("open311", request)):
        reported = inc["reported_at"]
        assert _dues(inc) == _dues(staff[name]), name
        assert inc["respond_due_at"] == reported + timedelta(hours=4), name
        assert inc["deadline_at"] == add_working_days(reported, 2, calendar), name
        assert inc["deadline_at"] > add_working_days(reported, 2), name  # the three holidays ahead were counted
    notice = made.json()[0]["service_notice"]
    assert f"接单时限 {request['respond_due_at'].astimezone(LOCAL_TZ):%Y-%m-%d %H:%M}" in notice and "北京时间" in notice


def test_a_residents_ticket_without_a_deadlines_file_keeps_the_policy_defaults(seeded, db_url, tmp_path):
    with _app(db_url, tmp_path) as client:
        ticket = _stored(seeded, "ticket = :t", t=_resident_report(client))
    reported = ticket["reported_at"]
    assert _dues(ticket) == (reported + timedelta(hours=24), reported + timedelta(hours=24))


def test_a_broken_deadlines_file_stops_the_import_naming_the_entry_and_writes_nothing(
        seeded, db_url, tmp_path, monkeypatch, capsys):
    from tests.api.test_corpus import all_counts, run_cli

    bad = tmp_path / "deadlines.toml"
    bad.write_text('[categories."安全隐患"]\nrespond = { hours = 0 }\n', encoding="utf-8")
    monkeypatch.setenv("GRIDMAP_DATABASE_URL", db_url)
    monkeypatch.setenv("GRIDMAP_DEADLINES_FILE", str(bad))
    monkeypatch.setenv("COLUMNS", "400")
    csv = tmp_path / "incidents.csv"
    csv.write_text(f"incident_id,lon,lat,category,reported_at\nIMP-1,{PLACE[0]},{PLACE[1]},安全隐患,2024-09-27 16:00\n",
                   encoding="utf-8")
    before = all_counts(seeded)
    code, out = run_cli(["import", "incidents", str(csv)], capsys)
    assert code == 2 and "deadlines.toml [categories.安全隐患].respond" in out, out
    assert all_counts(seeded) == before
