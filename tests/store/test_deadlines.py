"""Two deadline clocks (接单 response, 办结 completion), each with its own 红黄绿灯 light, on hand-built
histories across weekends and the holiday calendar; windows per category from a settings file; the
calendar loaded by ``gridmap calendar import``; both clocks stored on the incident and shown by the API."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from gridmap import deadlines as dl
from gridmap.dispatch import LOCAL_TZ, WorkCalendar


def cst(*args) -> datetime:
    return datetime(*args, tzinfo=LOCAL_TZ)


# 2024: National Day 10-01..10-07 off, Sunday 10-12 a make-up working day (调休上班).
NATIONAL_DAY = WorkCalendar(frozenset(date(2024, 10, d) for d in range(1, 8)), frozenset({date(2024, 10, 12)}))


def history(reported, accepted=None, closed=None, kind="complex", category="矛盾纠纷", rules=None, cal=None):
    rules = rules or dl.DeadlineRules()
    status = "closed" if closed else ("accepted" if accepted else "reported")
    return {"reported_at": reported, "accepted_at": accepted, "closed_at": closed, "status": status,
            "respond_due_at": rules.due(dl.RESPOND, reported, category, kind, cal),
            "deadline_at": rules.due(dl.COMPLETE, reported, category, kind, cal)}


def test_response_on_time_stays_green_when_completion_is_late():
    # the bug of issue 15: one light ran until closed_at, so a prompt 接单 showed red
    inc = history(cst(2024, 5, 6, 9), accepted=cst(2024, 5, 6, 10), closed=cst(2024, 5, 13, 9))  # Mon → next Mon
    lights = dl.incident_lights(inc, at=cst(2024, 6, 1))
    assert lights == {"respond_light": "green", "complete_light": "red"}


def test_late_response_but_completion_on_time():
    inc = history(cst(2024, 5, 6, 9), accepted=cst(2024, 5, 7, 10), closed=cst(2024, 5, 8, 9))
    assert dl.incident_lights(inc, at=cst(2024, 6, 1)) == {"respond_light": "red", "complete_light": "green"}


def test_completion_over_a_weekend_counts_working_days_only():
    # complex, reported Friday 10:00: 3 working days → Wednesday 10:00; closed Monday 17:00 is green (yellow from Tuesday 10:00)
    inc = history(cst(2024, 5, 10, 10), accepted=cst(2024, 5, 10, 11), closed=cst(2024, 5, 13, 17))
    assert inc["deadline_at"] == cst(2024, 5, 15, 10)
    assert inc["respond_due_at"] == cst(2024, 5, 11, 10)  # the response clock is 24 clock hours
    assert dl.incident_lights(inc, at=cst(2024, 6, 1)) == {"respond_light": "green", "complete_light": "green"}
    # Wednesday 08:00 (last 20 % of the wall-clock window) → yellow while still open
    open_inc = {**inc, "closed_at": None, "status": "accepted"}
    assert dl.incident_lights(open_inc, at=cst(2024, 5, 15, 8))["complete_light"] == "yellow"
    assert dl.incident_lights(open_inc, at=cst(2024, 5, 15, 10, 1))["complete_light"] == "red"


def test_completion_across_national_day_and_a_makeup_sunday():
    # reported Monday 09-30 15:00: working days 10-08 (Tue), 10-09 (Wed), 10-10 (Thu) → due Thu 15:00
    inc = history(cst(2024, 9, 30, 15), cal=NATIONAL_DAY)
    assert inc["deadline_at"] == cst(2024, 10, 10, 15)
    # reported on a holiday (10-03): the clock starts 00:00 of 10-08; 10-12 is a make-up working day
    inc2 = history(cst(2024, 10, 3, 12), cal=NATIONAL_DAY)
    assert inc2["deadline_at"] == cst(2024, 10, 11, 0)
    late = {**inc, "accepted_at": cst(2024, 9, 30, 16), "closed_at": cst(2024, 10, 10, 16), "status": "closed"}
    assert dl.incident_lights(late, at=cst(2024, 11, 1)) == {"respond_light": "green", "complete_light": "red"}
    # closed 10-10 14:00: yellow by the holiday calendar (last 20 % of the window), red without it
    just = {**late, "closed_at": cst(2024, 10, 10, 14)}
    no_calendar = history(cst(2024, 9, 30, 15), accepted=cst(2024, 9, 30, 16), closed=cst(2024, 10, 10, 14))
    assert dl.incident_lights(just, at=cst(2024, 11, 1))["complete_light"] == "yellow"
    assert dl.incident_lights(no_calendar, at=cst(2024, 11, 1))["complete_light"] == "red"


def test_open_incident_clocks_run_until_now_and_unknown_stops_have_no_light():
    inc = history(cst(2024, 5, 6, 9), kind="ordinary", category="民政")
    assert dl.incident_lights(inc, at=cst(2024, 5, 6, 12)) == {"respond_light": "green", "complete_light": "green"}
    assert dl.incident_lights(inc, at=cst(2024, 5, 7, 9, 1)) == {"respond_light": "red", "complete_light": "red"}
    imported = {**inc, "status": "closed"}  # closed at an unknown time
    assert dl.incident_lights(imported, at=cst(2024, 6, 1)) == {"respond_light": None, "complete_light": None}
    assert dl.running_clock(inc) == "respond" and dl.running_clock({"status": "accepted"}) == "complete"


def test_rules_from_a_settings_mapping_per_category():
    rules = dl.rules_from_mapping({"respond": {"ordinary": {"hours": 12}},
                                   "categories": {"安全生产": {"respond": {"hours": 2}, "complete": {"hours": 24}}}})
    t = cst(2024, 5, 10, 10)
    assert rules.due("respond", t, "安全生产", "complex") == t + timedelta(hours=2)
    assert rules.due("complete", t, "安全生产", "complex") == t + timedelta(hours=24)
    assert rules.due("respond", t, "民政", "ordinary") == t + timedelta(hours=12)
    assert rules.due("complete", t, "矛盾纠纷", "complex") == cst(2024, 5, 15, 10)  # default kept


@pytest.mark.parametrize("data,named", [
    ({"respond": {"urgent": {"hours": 2}}}, "'urgent'"),
    ({"categories": {"安全生产": {"respond": {"hours": 0}}}}, "categories.安全生产"),
    ({"categories": {"安全生产": {"respond": {"hours": 2, "working_days": 1}}}}, "either hours or working_days"),
    ({"complete": {"complex": {"days": 3}}}, "[complete].complex"),
    ({"windows": {}}, "'windows'"),
])
def test_bad_rules_name_the_entry(data, named):
    with pytest.raises(ValueError, match="deadlines") as err:
        dl.rules_from_mapping(data, source="deadlines.toml")
    assert named in str(err.value)


# -- stored on the incident, from the settings file, through the API ------------------------------------------

DEADLINES_TOML = """
[respond]
ordinary = { hours = 24 }
[categories."安全生产"]
respond = { hours = 2 }
complete = { hours = 24 }
"""


def test_settings_file_windows_are_stored_on_the_incident(engine, tmp_path):
    from api.usecases.deadlines import deadline_rules
    from geodata.store import incidents

    path = tmp_path / "deadlines.toml"
    path.write_text(DEADLINES_TOML, encoding="utf-8")
    rules = deadline_rules(path)
    t = cst(2024, 5, 10, 10)
    urgent = incidents.create_incident(engine, lon=121.48, lat=31.2, category="安全生产", reported_at=t,
                                       incident_id="U1", deadline_rules=rules)
    plain = incidents.create_incident(engine, lon=121.48, lat=31.2, category="矛盾纠纷", reported_at=t,
                                      incident_id="P1", deadline_rules=rules)
    assert (urgent["respond_due_at"], urgent["deadline_at"]) == (t + timedelta(hours=2), t + timedelta(hours=24))
    assert (plain["respond_due_at"], plain["deadline_at"]) == (t + timedelta(hours=24), cst(2024, 5, 15, 10))
    incidents.transition(engine, "U1", "claim", acting_member="M9", at=t + timedelta(hours=1))
    shown = incidents.with_light(incidents.get_incident(engine, "U1"), at=t + timedelta(hours=23))
    assert (shown["respond_light"], shown["complete_light"], shown["light"]) == ("green", "yellow", "yellow")
    bad = tmp_path / "bad.json"
    bad.write_text('{"respond": {"ordinary": {"hours": -1}}}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.json \[respond\].ordinary"):
        deadline_rules(bad)


def test_calendar_import_command_loads_the_holidays_all_or_nothing(engine, db_url, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app

    monkeypatch.setenv("GRIDMAP_DATABASE_URL", db_url)
    good = tmp_path / "2024.csv"
    good.write_text("date,kind,name\n2024-10-01,holiday,国庆节\n2024-10-02,休\n2024-10-12,workday,调休上班\n",
                    encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text("2024-10-03,holiday\n2024-13-40,holiday\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["calendar", "import", str(good)])
    assert result.exit_code == 0, result.output
    assert "2 holidays, 1 make-up working days" in result.output
    before = _holidays(engine)
    assert before == [(date(2024, 10, 1), "holiday"), (date(2024, 10, 2), "holiday"), (date(2024, 10, 12), "workday")]
    result = runner.invoke(app, ["calendar", "import", str(bad)])
    assert result.exit_code == 2 and "bad.csv line 2" in result.output
    assert _holidays(engine) == before  # 10-03 of line 1 was not written either
    # the stored calendar moves a complex deadline: reported Mon 09-30 15:00, 10-01/02 off
    # → working days 10-03, 10-04, 10-07: due Mon 10-07 15:00
    from geodata.store import incidents

    inc = incidents.create_incident(engine, lon=121.48, lat=31.2, category="矛盾纠纷", reported_at=cst(2024, 9, 30, 15))
    assert inc["deadline_at"] == cst(2024, 10, 7, 15)


def _holidays(engine):
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.text("SELECT day, kind FROM holidays ORDER BY day"))]
