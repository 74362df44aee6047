"""The weekly report (每周报表): each street's workbook of the last full week written to the folder and
recorded once (idempotent), by the use case, by ``gridmap report weekly`` and by a real worker running
the queued task; the leader page lists the street's reports, downloads them (audited), and answers the
same 404 for another street's report, a missing one and a file changed on disk."""

from __future__ import annotations

import io
import os
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from tests.web.conftest import login
from tests.web.test_jobs import _start_worker, _wait_for
from tests.web.test_leader import incidents  # noqa: F401 (fixture)

TODAY = date(2026, 11, 25)  # a Wednesday: the last full week is Mon 16 – Sun 22 November 2026
WEEK = (date(2026, 11, 16), date(2026, 11, 22))


def _rows(engine):
    with engine.connect() as c:
        return c.execute(sa.text("SELECT street_code, week_start, week_end, path FROM weekly_reports "
                                 "ORDER BY street_code")).all()


def test_last_full_week_is_monday_to_sunday_before_today():
    from api.usecases.weekly_reports import last_full_week

    assert last_full_week(TODAY) == WEEK
    assert last_full_week(date(2026, 11, 23)) == WEEK  # on a Monday: the week that ended yesterday
    assert last_full_week(date(2026, 11, 22)) == (date(2026, 11, 9), date(2026, 11, 15))


def test_each_street_written_once_with_the_week_and_masked_names(incidents, tmp_path):  # noqa: F811
    from api.usecases.audit import SYSTEM, job_detail
    from api.usecases.weekly_reports import write_weekly_reports

    first = write_weekly_reports(incidents, tmp_path, today=TODAY, audit=(SYSTEM, job_detail(None, "test")))
    assert (first.week_start, first.week_end) == WEEK and first.written == ("S1", "S2")
    again = write_weekly_reports(incidents, tmp_path, today=TODAY, audit=(SYSTEM, job_detail(None, "test")))
    assert again.written == () and again.skipped == ("S1", "S2")
    rows = _rows(incidents)
    assert [(r.street_code, r.week_start, r.week_end) for r in rows] == [("S1", *WEEK), ("S2", *WEEK)]
    wb = load_workbook(rows[0].path)
    assert "外滩街道" in wb["街道"]["A1"].value and "2026-11-16 至 2026-11-22" in wb["街道"]["A2"].value
    members = wb["党员"]
    names = [members.cell(r, 3).value for r in range(7, members.max_row + 1)]
    assert names == ["王*"]  # a stored file carries no member's full name


def test_cli_runs_it_now_and_twice_adds_nothing(incidents, db_url, tmp_path, monkeypatch):  # noqa: F811
    from typer.testing import CliRunner

    from api.cli import app

    monkeypatch.setenv("GRIDMAP_DATABASE_URL", db_url)
    args = ["report", "weekly", "--out", str(tmp_path), "--today", TODAY.isoformat()]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "2 written" in r.output
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and "0 written, 2 already recorded" in r.output, r.output
    assert len(_rows(incidents)) == 2 and (tmp_path / "S1" / "S1-2026-11-16.xlsx").is_file()


def test_a_real_worker_runs_the_queued_weekly_task(incidents, db_url, tmp_path, monkeypatch):  # noqa: F811
    from api import jobs
    from api.jobs.weekly_report import WEEKLY_REPORT_TASK

    monkeypatch.setenv("GRIDMAP_WEEKLY_REPORT_DIR", str(tmp_path))  # the worker inherits the environment
    at = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)  # the schedule's Sunday 18:00 UTC = Monday 02:00 China
    app = jobs._deferring_app(db_url)
    job_id = app.configure_task(WEEKLY_REPORT_TASK, queue=jobs.QUEUE).defer(timestamp=int(at.timestamp()))
    worker = _start_worker(db_url)
    try:
        _wait_for(lambda: _status(incidents, job_id) in ("succeeded", "failed"), "the weekly job")
        assert _status(incidents, job_id) == "succeeded", worker.stderr
    finally:
        os.killpg(worker.pid, 15)
        worker.wait()
    rows = _rows(incidents)
    assert [(r.street_code, r.week_start) for r in rows] == [("S1", WEEK[0]), ("S2", WEEK[0])]
    assert all(r.path.startswith(str(tmp_path)) for r in rows)


def _status(engine, job_id):
    with engine.connect() as c:
        return c.execute(sa.text("SELECT status::text FROM procrastinate_jobs WHERE id = :i"), {"i": job_id}).scalar()


@pytest.fixture()
def written(incidents, tmp_path):  # noqa: F811
    from api.usecases.audit import SYSTEM, job_detail
    from api.usecases.weekly_reports import write_weekly_reports

    write_weekly_reports(incidents, tmp_path, today=TODAY, audit=(SYSTEM, job_detail(None, "test")))
    with incidents.connect() as c:
        return dict(c.execute(sa.text("SELECT street_code, report_id FROM weekly_reports")).all())


def test_page_lists_the_streets_reports_and_downloads_them_audited(client, written, incidents):  # noqa: F811
    login(client, "leader1")
    page = client.get("/leader", params={"region": "S1"}).text
    assert f'href="/leader/reports/{written["S1"]}.xlsx"' in page and "2026-11-16 至 2026-11-22" in page
    assert f'/leader/reports/{written["S2"]}.xlsx' not in page
    r = client.get(f"/leader/reports/{written['S1']}.xlsx")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert "外滩街道" in load_workbook(io.BytesIO(r.content))["街道"]["A1"].value
    with incidents.connect() as c:
        audit = c.execute(sa.text("SELECT ids FROM audit_log WHERE what = 'weekly_report'")).all()
    assert [list(a.ids) for a in audit] == [["S1"]]


def test_another_streets_missing_and_changed_reports_are_the_same_404(client, written, incidents):  # noqa: F811
    login(client, "leader1")
    other = client.get(f"/leader/reports/{written['S2']}.xlsx")
    missing = client.get("/leader/reports/999999.xlsx")
    same = other.text.replace(f"/{written['S2']}.xlsx", "/999999.xlsx")  # the error page names its own address
    assert other.status_code == missing.status_code == 404 and same == missing.text
    with incidents.connect() as c:
        path = c.execute(sa.text("SELECT path FROM weekly_reports WHERE street_code = 'S1'")).scalar()
    with open(path, "ab") as f:
        f.write(b"changed")
    changed = client.get(f"/leader/reports/{written['S1']}.xlsx")
    assert changed.status_code == 404 and changed.text.replace(f"/{written['S1']}.xlsx", "/999999.xlsx") == missing.text
    with incidents.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM audit_log WHERE what = 'weekly_report'")).scalar() == 0
