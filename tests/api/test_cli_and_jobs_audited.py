"""Writes made without a route are audited too: the command line, the background jobs, login and logout.

Each write is run through its real face (``gridmap …`` by Typer's runner, a job's task body with a
procrastinate ``JobContext``, ``POST /login`` / ``/logout`` through the app) on the real PostGIS. The
test reads the new ``audit_log`` row: action, ids, who (``admin`` + ``by = "cli"`` + the OS user for the
command line, ``system`` + the job id for jobs, the account for login), and no personal data — no name,
phone or ID number of the seeded region, no password, no hash of one, no token text. Then a trigger
makes that audit insert fail and the write must be gone with it (every table unchanged).
"""

from __future__ import annotations

import getpass
import json
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from api.cli import app as cli
from tests.api.test_every_write_audited import (SEED_PII, _fail_audit, _pii_in_db, _restore_audit, audit_rows_after,
                                                table_digests)
from tests.web.conftest import ACCOUNTS, PASSWORD, csrf_from, login, seed_region

pytestmark = pytest.mark.db

NEW_PASSWORD = "another-long-pw-9"
CLI_DETAIL = {"by": "cli", "os_user": getpass.getuser()}


def _last(engine) -> int:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT coalesce(max(audit_id), 0) FROM audit_log")).scalar_one()


def _one_row(engine, last: int, action: str) -> dict:
    rows = [r for r in audit_rows_after(engine, last) if r["action"] == action]
    assert len(rows) == 1, audit_rows_after(engine, last)
    return rows[0]


def _no_personal_data(engine, row: dict, *extra: str) -> None:
    with engine.connect() as c:
        hashes = {v for (v,) in c.execute(sa.text("SELECT password_hash FROM users UNION ALL "
                                                   "SELECT token_hash FROM api_tokens UNION ALL "
                                                   "SELECT session_hash FROM login_sessions"))}
    secrets = set(SEED_PII) | _pii_in_db(engine) | hashes | {PASSWORD, NEW_PASSWORD, *extra}
    text = json.dumps({k: row[k] for k in ("ids", "detail", "member_id", "what")}, ensure_ascii=False, default=str)
    leaked = [s for s in secrets if s and s in text]
    assert not leaked, f"audit row {row['audit_id']} holds personal data or a secret: {leaked}"


@pytest.fixture()
def failing(engine):
    """``failing(action)`` makes the next audit insert of ``action`` fail; the trigger is dropped after."""
    try:
        yield lambda action: _fail_audit(engine, action)
    finally:
        _restore_audit(engine)


def _run(db_url, *args, stdin: str = ""):
    return CliRunner().invoke(cli, list(args), input=stdin, env={"GRIDMAP_DATABASE_URL": db_url})


def _user_id(engine, username: str) -> str:
    with engine.connect() as c:
        return str(c.execute(sa.text("SELECT user_id FROM users WHERE username = :u"), {"u": username}).scalar_one())


# -- the command line ---------------------------------------------------------------------------------

def test_user_create_password_disable_are_audited_as_the_cli(engine, db_url):
    last = _last(engine)
    r = _run(db_url, "user", "create", "--username", "wang", "--role", "responder", "--region", "C1", "--member", "M1",
             "--password-stdin", stdin=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    uid = _user_id(engine, "wang")
    for args in (("password", "wang", "--password-stdin"), ("disable", "wang")):
        assert _run(db_url, "user", *args, stdin=NEW_PASSWORD + "\n").exit_code == 0
    rows = {r["action"]: r for r in audit_rows_after(engine, last)}
    assert set(rows) == {"user_create", "user_password", "user_disable"}
    for row in rows.values():
        assert (row["role"], row["token_id"], row["what"], row["ids"]) == ("admin", None, "users", [uid])
        assert {k: row["detail"][k] for k in CLI_DETAIL} == CLI_DETAIL
        _no_personal_data(engine, row)
    assert rows["user_create"]["detail"]["role"] == "responder" and rows["user_create"]["detail"]["regions"] == ["C1"]


def test_a_refused_or_missing_user_writes_nothing(engine, db_url):
    before = table_digests(engine)
    assert _run(db_url, "user", "disable", "nobody").exit_code == 2
    assert _run(db_url, "user", "password", "nobody", "--password-stdin", stdin=NEW_PASSWORD + "\n").exit_code == 2
    assert _run(db_url, "user", "create", "--username", "li", "--role", "leader", "--region", "S1",
                "--password-stdin", stdin="short\n").exit_code == 2
    assert table_digests(engine) == before


@pytest.mark.parametrize("action", ["user_create", "user_password", "user_disable"])
def test_a_failing_audit_row_takes_the_account_write_with_it(engine, db_url, failing, action):
    if action != "user_create":
        assert _run(db_url, "user", "create", "--username", "li", "--role", "leader", "--region", "S1",
                    "--password-stdin", stdin=PASSWORD + "\n").exit_code == 0
    before = table_digests(engine)
    failing(action)
    args = {"user_create": ("create", "--username", "zhao", "--role", "leader", "--region", "S1", "--password-stdin"),
            "user_password": ("password", "li", "--password-stdin"), "user_disable": ("disable", "li")}[action]
    r = _run(db_url, "user", *args, stdin=NEW_PASSWORD + "\n")
    assert r.exit_code != 0 and "forced audit failure" in repr(r.exception)
    assert table_digests(engine) == before


def test_token_create_and_revoke_are_audited_without_the_token_or_its_label(engine, db_url):
    last = _last(engine)
    r = _run(db_url, "token", "create", "--role", "leader", "--region", "S1", "--label", "张三的平板")
    assert r.exit_code == 0, r.output
    token = next(ln for ln in r.output.splitlines() if ln.startswith("gm_"))
    token_id = r.output.split("token id ")[1].split(":")[0]
    assert _run(db_url, "token", "revoke", token_id).exit_code == 0
    rows = {r["action"]: r for r in audit_rows_after(engine, last)}
    assert set(rows) == {"token_create", "token_revoke"}
    for row in rows.values():
        assert (row["role"], row["what"], row["ids"]) == ("admin", "api_tokens", [token_id])
        assert {k: row["detail"][k] for k in CLI_DETAIL} == CLI_DETAIL
        _no_personal_data(engine, row, token, "张三的平板")
    before = table_digests(engine)
    assert _run(db_url, "token", "revoke", token_id).exit_code == 2  # already revoked: nothing, not even a row
    assert table_digests(engine) == before


@pytest.mark.parametrize("action", ["token_create", "token_revoke"])
def test_a_failing_audit_row_takes_the_token_write_with_it(engine, db_url, failing, action):
    from geodata.store import auth

    rec, _ = auth.create_token(engine, "leader", ["S1"])
    before = table_digests(engine)
    failing(action)
    args = ("create", "--role", "leader", "--region", "S1") if action == "token_create" else ("revoke", str(rec.token_id))
    r = _run(db_url, "token", *args)
    assert r.exit_code != 0 and "forced audit failure" in repr(r.exception)
    assert table_digests(engine) == before


def test_calendar_import_is_audited_with_the_dates(engine, db_url, tmp_path, failing):
    path = tmp_path / "2026.txt"
    path.write_text("date\n2026-10-01,holiday\n2026-10-02,休\n2026-10-10,班\n", encoding="utf-8")
    before = table_digests(engine)
    failing("calendar_import")
    r = _run(db_url, "calendar", "import", str(path))
    assert r.exit_code != 0 and table_digests(engine) == before
    _restore_audit(engine)
    last = _last(engine)
    assert _run(db_url, "calendar", "import", str(path)).exit_code == 0
    row = _one_row(engine, last, "calendar_import")
    assert (row["role"], row["what"], row["ids"]) == ("admin", "holidays", ["2026-10-01", "2026-10-02", "2026-10-10"])
    assert row["detail"]["by"] == "cli" and row["detail"]["os_user"] == getpass.getuser()


def test_posts_import_is_audited_in_its_transaction(engine, db_url, tmp_path, failing):
    from tests.store.test_needs import add_members
    from tests.store.test_posts import write_posts

    seed_region(engine)
    add_members(engine)
    path = write_posts(tmp_path)
    before = table_digests(engine)
    failing("import")
    assert _run(db_url, "posts", "import", str(path)).exit_code != 0
    assert table_digests(engine) == before
    _restore_audit(engine)
    last = _last(engine)
    assert _run(db_url, "posts", "import", str(path)).exit_code == 0
    row = _one_row(engine, last, "import")
    assert (row["role"], row["what"]) == ("admin", "posts") and row["ids"] and row["detail"]["by"] == "cli"
    _no_personal_data(engine, row)


def test_incident_import_is_audited_in_its_transaction(engine, db_url, tmp_path, failing):
    seed_region(engine)
    path = tmp_path / "incidents.csv"
    path.write_text("incident_id,category,reported_at,lon,lat\nI-1,民政,2026-11-20 09:00,121.4815,31.2055\n"
                    "I-2,城管,2026-11-20 10:00,121.4825,31.2055\n", encoding="utf-8")
    before = table_digests(engine)
    failing("import")
    assert _run(db_url, "import", "incidents", str(path)).exit_code != 0
    assert table_digests(engine) == before
    _restore_audit(engine)
    last = _last(engine)
    r = _run(db_url, "import", "incidents", str(path))
    assert r.exit_code == 0, r.output
    row = _one_row(engine, last, "import")
    assert (row["role"], row["what"], row["ids"]) == ("admin", "incidents", ["I-1", "I-2"])
    assert row["detail"]["by"] == "cli" and row["detail"]["inserted"] == 2


# -- the background jobs -------------------------------------------------------------------------------

def _context(db_url: str, job_id: int, task: str, **kwargs):
    """The context procrastinate hands a task body (``pass_context=True``) for job ``job_id``."""
    from procrastinate import JobContext
    from procrastinate.jobs import Job

    from api.jobs import QUEUE, worker_app

    job = Job(id=job_id, queue=QUEUE, lock=None, queueing_lock=None, task_name=task, task_kwargs=kwargs)
    return JobContext(app=worker_app(db_url), job=job, start_timestamp=time.time(),
                      additional_context={"database_url": db_url}, abort_reason=lambda: None)


def _held_incident(engine):
    """Incident R in grid G1 held by M1, reported at T0 (tests/web/test_notices.py)."""
    from geodata.store import incidents
    from tests.web.test_notices import T0

    seed_region(engine)
    incidents.create_incident(engine, lon=121.4815, lat=31.2055, category="民政", incident_id="R", reported_at=T0)
    incidents.transition(engine, "R", "claim", acting_member="M1", at=T0 + timedelta(hours=1))
    return T0


def test_the_reminder_run_is_one_audit_row_with_the_incidents_it_noticed_and_escalated(engine, db_url):
    from api.jobs.reminders import REMINDERS_TASK, reminders_job

    t0 = _held_incident(engine)
    last = _last(engine)
    done = reminders_job(_context(db_url, 901, REMINDERS_TASK), int((t0 + timedelta(days=5)).timestamp()))
    assert done["notices"] and done["escalated"]  # red by then: noticed and escalated
    row = _one_row(engine, last, "reminders_run")
    assert (row["role"], row["token_id"], row["what"], row["ids"]) == ("system", None, "incidents", ["R"])
    assert row["detail"]["job_id"] == 901 and row["detail"]["escalated"] == ["R"]
    assert row["detail"]["notices"] == done["notices"]
    _no_personal_data(engine, row)
    last = _last(engine)
    assert reminders_job(_context(db_url, 902, REMINDERS_TASK), int((t0 + timedelta(days=5)).timestamp()))["notices"] == 0
    assert audit_rows_after(engine, last) == []  # a run that writes nothing leaves no row


def test_a_failing_audit_row_takes_the_whole_reminder_run_with_it(engine, db_url, failing):
    from api.jobs.reminders import REMINDERS_TASK, reminders_job

    t0 = _held_incident(engine)
    before = table_digests(engine)
    failing("reminders_run")
    with pytest.raises(sa.exc.DBAPIError, match="forced audit failure"):
        reminders_job(_context(db_url, 903, REMINDERS_TASK), int((t0 + timedelta(days=5)).timestamp()))
    assert table_digests(engine) == before  # no mark, no notice, no escalation, no event


def _queued_redraw(engine, db_url) -> tuple[int, dict]:
    from api.jobs.redraw import enqueue_redraw
    from tests.web.test_planner_redraw import seed_c3

    seed_region(engine)
    seed_c3(engine)
    kwargs = dict(community_code="C3", name="方案一", requested_by="planner1", locked=["K1", "K2"], band=None,
                  minimal_change=True)
    job_id = enqueue_redraw(db_url, who={"token_id": None, "role": "planner", "member_id": None}, **kwargs)
    return job_id, kwargs


def test_the_redraw_workers_draft_is_audited_as_the_system_with_the_job_id(engine, db_url):
    from api.jobs.redraw import REDRAW_TASK, redraw_job

    job_id, kwargs = _queued_redraw(engine, db_url)
    last = _last(engine)
    draft_id = redraw_job(_context(db_url, job_id, REDRAW_TASK, **kwargs), **kwargs)["draft_id"]
    row = _one_row(engine, last, "draft_save")
    assert (row["role"], row["what"], row["ids"]) == ("system", "redraw_drafts", [str(draft_id)])
    assert row["detail"]["job_id"] == job_id and row["detail"]["community_code"] == "C3"
    _no_personal_data(engine, row)


def test_a_failing_audit_row_takes_the_draft_with_it(engine, db_url, failing):
    from api.jobs.redraw import REDRAW_TASK, redraw_job
    from geodata.store.jobs import get_progress

    job_id, kwargs = _queued_redraw(engine, db_url)
    failing("draft_save")
    with pytest.raises(sa.exc.DBAPIError, match="forced audit failure"):
        redraw_job(_context(db_url, job_id, REDRAW_TASK, **kwargs), **kwargs)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM redraw_drafts")).scalar_one() == 0
    assert get_progress(engine, job_id)["state"] == "failed"  # the planner sees the failure


def test_the_weekly_reports_stored_rows_are_audited_as_the_system(engine, db_url, tmp_path, monkeypatch):
    from datetime import datetime

    from api.jobs.weekly_report import WEEKLY_REPORT_TASK, weekly_report_job
    from api.settings import get_settings

    seed_region(engine)
    monkeypatch.setenv("GRIDMAP_WEEKLY_REPORT_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        last = _last(engine)
        sunday = datetime(2026, 11, 22, 18, tzinfo=datetime.now().astimezone().tzinfo).timestamp()
        done = weekly_report_job(_context(db_url, 904, WEEKLY_REPORT_TASK), int(sunday))
    finally:
        get_settings.cache_clear()
    assert done["written"]
    with engine.connect() as c:
        report_ids = [str(i) for (i,) in c.execute(sa.text("SELECT report_id FROM weekly_reports ORDER BY report_id"))]
    rows = [r for r in audit_rows_after(engine, last) if r["action"] == "weekly_report"]
    assert sorted(i for r in rows for i in r["ids"]) == sorted(report_ids)
    for row in rows:
        assert (row["role"], row["what"], row["detail"]["job_id"]) == ("system", "weekly_reports", 904)
        _no_personal_data(engine, row)


def test_a_failing_audit_row_takes_the_weekly_report_row_with_it(engine, tmp_path, failing):
    from datetime import date

    from api.usecases.audit import SYSTEM, job_detail
    from api.usecases.weekly_reports import write_weekly_reports

    seed_region(engine)
    before = {t: d for t, d in table_digests(engine).items() if t in ("weekly_reports", "audit_log")}
    failing("weekly_report")
    with pytest.raises(sa.exc.DBAPIError, match="forced audit failure"):
        write_weekly_reports(engine, tmp_path, today=date(2026, 11, 25), audit=(SYSTEM, job_detail(905, "weekly")))
    # (the leader view's caches, refreshed while the workbook is built, are no part of the write)
    assert {t: d for t, d in table_digests(engine).items() if t in before} == before
    assert not list(tmp_path.rglob("*.xlsx"))  # the workbook file went with its row


# -- login and logout ---------------------------------------------------------------------------------

@pytest.fixture()
def client(engine, db_url, tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings
    from geodata.store import users

    seed_region(engine)
    for name, (role, regions, member) in ACCOUNTS.items():
        users.create_user(engine, name, PASSWORD, role, regions, member_id=member)
    app = create_app(Settings(database_url=db_url, upload_dir=tmp_path / "uploads"))
    with TestClient(app, follow_redirects=False, raise_server_exceptions=False) as c:
        yield c


def test_login_and_logout_are_audited_as_the_account(engine, client):
    last = _last(engine)
    assert login(client, "resp1").status_code == 303
    token = csrf_from(client.get("/responder").text)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    rows = {r["action"]: r for r in audit_rows_after(engine, last)}
    uid = _user_id(engine, "resp1")
    for action in ("login", "logout"):
        row = rows[action]
        assert (row["role"], row["member_id"], row["what"], row["ids"]) == ("responder", "M1", "session", [uid])
        _no_personal_data(engine, row, client.cookies.get("gridmap_session") or "")


def test_a_failing_login_audit_row_starts_no_session(engine, client, failing):
    failing("login")
    assert login(client, "leader1").status_code == 500
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM login_sessions")).scalar_one() == 0


def test_a_failing_logout_audit_row_keeps_the_session(engine, client, failing):
    assert login(client, "leader1").status_code == 303
    token = csrf_from(client.get("/leader").text)
    failing("logout")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 500
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM login_sessions")).scalar_one() == 1
    _restore_audit(engine)
    assert client.get("/leader").status_code == 200  # still logged in: the session was not ended


def test_a_wrong_password_is_counted_and_audited_together(engine, client, failing):
    before = table_digests(engine)
    failing("login_failed")
    assert login(client, "leader1", "wrong-password-1").status_code == 500
    assert table_digests(engine) == before  # neither the throttle's count nor the row
    _restore_audit(engine)
    last = _last(engine)
    assert login(client, "leader1", "wrong-password-1").status_code == 401
    row = _one_row(engine, last, "login_failed")
    assert (row["what"], row["ids"], row["detail"]["username"]) == ("session", [], "leader1")
    _no_personal_data(engine, row, "wrong-password-1")
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM login_failures")).scalar_one() == 1


def test_the_demos_accounts_are_audited_as_the_cli(engine):
    from api.commands.demo import DEMO_USERS, _demo_accounts

    seed_region(engine)
    last = _last(engine)
    passwords = _demo_accounts(engine)
    _demo_accounts(engine)  # a second demo run sets new passwords
    rows = audit_rows_after(engine, last)
    assert sorted(r["action"] for r in rows) == sorted(["user_create", "user_password"] * len(DEMO_USERS))
    assert {r["role"] for r in rows} == {"admin"} and all(r["detail"]["by"] == "cli" for r in rows)
    for row in rows:
        _no_personal_data(engine, row, *passwords.values())


def test_a_layer_import_is_audited_as_admin_from_the_os_user(engine, db_url, tmp_path):
    """`gridmap import` audits itself in its transaction (geodata.store.importer): verified, not duplicated."""
    seed_region(engine)
    path = tmp_path / "households.csv"
    path.write_text("household_id,lon,lat,name,phone\nH8,121.4851,31.2051,赵八,13700008888\n", encoding="utf-8")
    last = _last(engine)
    r = _run(db_url, "import", "households", str(path))
    assert r.exit_code == 0, r.output
    rows = audit_rows_after(engine, last)
    assert [(x["action"], x["role"], x["what"], x["ids"]) for x in rows] == [("import", "admin", "households", ["H8"])]
    assert rows[0]["detail"]["by"] == f"os:{getpass.getuser()}"
    _no_personal_data(engine, rows[0], "赵八", "13700008888")
