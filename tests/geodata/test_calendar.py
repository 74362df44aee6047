"""The holiday file (节假日调休) read by geodata and applied by the dispatch deadlines."""

from __future__ import annotations

from datetime import date

from gridmap import dispatch as rules

from dispatch_cases import NATIONAL_DAY_2018, cst


def test_complex_deadline_honours_a_holiday_file(tmp_path):
    from geodata.calendar import read_calendar_file

    f = tmp_path / "holidays.csv"
    f.write_text(NATIONAL_DAY_2018, encoding="utf-8")
    cal = read_calendar_file(f)
    assert date(2018, 10, 4) in cal.holidays and date(2018, 9, 30) in cal.workdays
    assert not cal.is_working_day(date(2018, 10, 1)) and cal.is_working_day(date(2018, 9, 30))
    # Sunday 30 Sep 2018 was a make-up working day: the clock runs from the report, then 1–7 Oct are off.
    assert rules.deadline(cst(2018, 9, 30, 11, 9), rules.COMPLEX, cal) == cst(2018, 10, 10, 11, 9)
    # Friday 28 Sep: Sat 29 (worked), Sun 30 (worked), Mon 8 Oct.
    assert rules.deadline(cst(2018, 9, 28, 9, 0), rules.COMPLEX, cal) == cst(2018, 10, 8, 9, 0)
    # Without the calendar the same report would be due on 3 Oct (a holiday).
    assert rules.deadline(cst(2018, 9, 28, 9, 0), rules.COMPLEX) == cst(2018, 10, 3, 9, 0)
    # Reported on a holiday: clock starts at the next working day (Mon 8 Oct 00:00) → Thu 11 Oct 00:00.
    assert rules.deadline(cst(2018, 10, 2, 12, 0), rules.COMPLEX, cal) == cst(2018, 10, 11, 0, 0)
    # the ordinary 24 h does not care about holidays
    assert rules.deadline(cst(2018, 10, 2, 12, 0), rules.ORDINARY, cal) == cst(2018, 10, 3, 12, 0)
