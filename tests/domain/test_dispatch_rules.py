"""Dispatch rules: deadlines (24 h, 3 working days with a holiday file), 红黄绿灯, the incident state machine,
escalation, and nearest responders by a KD-tree on the sphere against an independent brute force.

Domain tier: built data only (no database, no browser, no ../shared).
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from gridmap import dispatch as rules
from reference import brute_force_nearest

from dispatch_cases import cst, query_cases, random_members

LON0, LAT0 = 120.17, 30.28  # Hangzhou


# -- deadlines -----------------------------------------------------------------------------------

def test_ordinary_deadline_is_24_clock_hours_even_over_a_weekend():
    fri = cst(2026, 11, 20, 10, 0)  # a Friday
    assert rules.deadline(fri, rules.ORDINARY) == cst(2026, 11, 21, 10, 0)
    # naive = China time; UTC input is converted
    assert rules.deadline(datetime(2026, 11, 20, 10, 0), rules.ORDINARY) == cst(2026, 11, 21, 10, 0)
    assert rules.deadline(datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc), rules.ORDINARY) == cst(2026, 11, 21, 10, 0)


@pytest.mark.parametrize("reported, due", [
    (cst(2026, 11, 20, 10, 0), cst(2026, 11, 25, 10, 0)),   # Fri → Wed (Sat/Sun skipped)
    (cst(2026, 11, 18, 15, 30), cst(2026, 11, 23, 15, 30)),  # Wed → Mon
    (cst(2026, 11, 16, 9, 0), cst(2026, 11, 19, 9, 0)),     # Mon → Thu, no weekend
    (cst(2026, 11, 21, 10, 0), cst(2026, 11, 26, 0, 0)),    # Sat: clock starts Mon 00:00 → Thu 00:00
    (cst(2026, 11, 22, 23, 59), cst(2026, 11, 26, 0, 0)),   # Sun late: same
    (cst(2026, 11, 20, 23, 59), cst(2026, 11, 25, 23, 59)),  # Fri just before midnight
])
def test_complex_deadline_skips_weekends(reported, due):
    got = rules.deadline(reported, rules.COMPLEX)
    assert got == due
    # exactly three working days lie in the window's dates after the start day
    start = reported.date() if reported.weekday() < 5 else reported.date() + timedelta(days=7 - reported.weekday())
    days = [start + timedelta(days=i) for i in range(1, (got.date() - start).days + 1)]
    assert sum(d.weekday() < 5 for d in days) == 3


@pytest.mark.parametrize("text, msg", [("2018-13-01", "line 1"), ("x\n", "line 1"),
                                       ("2018-10-01\n2018-10-02,party", "line 2.*unknown kind")])
def test_bad_calendar_lines_are_refused_with_their_line(text, msg):
    with pytest.raises(ValueError, match=msg):
        rules.parse_calendar(text.splitlines(), source="h.csv")


def test_response_kind_rules():
    assert rules.response_kind("民政") == rules.ORDINARY
    assert rules.response_kind("矛盾纠纷") == rules.COMPLEX
    assert rules.response_kind("民政", level=2) == rules.COMPLEX
    assert rules.response_kind("矛盾纠纷", kind="ordinary") == rules.ORDINARY
    with pytest.raises(ValueError):
        rules.response_kind("民政", kind="urgent")


# -- lights -----------------------------------------------------------------------------------------

def test_lights_green_yellow_red_boundaries():
    r = cst(2026, 11, 20, 0, 0)
    d = r + timedelta(hours=24)  # yellow from hour 19.2 (last 20 %)
    assert rules.light(r, d, r + timedelta(hours=19, minutes=11)) == "green"
    assert rules.light(r, d, r + timedelta(hours=19, minutes=12)) == "yellow"
    assert rules.light(r, d, d) == "yellow"
    assert rules.light(r, d, d + timedelta(seconds=1)) == "red"
    # a closed incident keeps the light of its closing time, whatever "now" is
    assert rules.light(r, d, d + timedelta(days=9), closed_at=r + timedelta(hours=2)) == "green"
    assert rules.light(r, d, r + timedelta(hours=1), closed_at=d + timedelta(hours=1)) == "red"
    assert rules.lights([r, r], [d, None], r + timedelta(hours=1)) == ["green", None]


# -- life cycle ------------------------------------------------------------------------------------

LEGAL = {("reported", "assign"): "assigned", ("reported", "claim"): "accepted", ("assigned", "assign"): "assigned",
         ("assigned", "accept"): "accepted",
         ("accepted", "close"): "closed", ("closed", "rate"): "rated"}


@pytest.mark.parametrize("state, action", list(itertools.product(rules.STATES, rules.ACTIONS)))
def test_state_machine_every_pair(state, action):
    if (state, action) in LEGAL:
        assert rules.next_state(state, action) == LEGAL[(state, action)]
    else:
        with pytest.raises(rules.IllegalTransition, match=f"cannot {action}"):
            rules.next_state(state, action)


def test_ratings_and_statuses():
    assert rules.check_rating(5) == 5
    for bad in (0, 6, 2.5, True):
        with pytest.raises(ValueError):
            rules.check_rating(bad)
    assert rules.normalise_status("网格员关闭") == "closed" == rules.normalise_status("网格长关闭")
    assert rules.normalise_status(None) == "reported" and rules.normalise_status("已派单") == "assigned"
    assert rules.normalise_status("closed") == "closed"
    with pytest.raises(ValueError):
        rules.normalise_status("不明")


def test_escalate_takes_the_first_level_with_someone():
    calls = []

    def find(found):
        def f(level):
            calls.append(level)
            return found.get(level)
        return f

    assert rules.escalate(find({"grid": [1]})) == ("grid", [1])
    assert rules.escalate(find({"grid": [], "community": [], "street": [7]})) == ("street", [7])
    assert rules.escalate(find({"grid": [], "community": [], "street": []})) == ("street", [])
    assert rules.escalate(find({"grid": None, "community": [3], "street": []})) == ("community", [3])
    assert rules.escalate(find({})) == (None, [])


def test_sphere_kdtree_equals_brute_force():
    ids, lon, lat, skills, avail = random_members(3000, seed=3)
    idx = rules.ResponderIndex(ids, lon, lat, skills, avail)
    for qlon, qlat, k, skill, radius in query_cases(4, 120):
        got = idx.nearest(qlon, qlat, k=k, skill=skill, radius_m=radius)
        want = brute_force_nearest(qlon, qlat, ids, lon, lat, skills, avail, k=k, skill=skill, radius_m=radius)
        assert [g[0] for g in got] == [w[0] for w in want]
        np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], rtol=0, atol=1e-6)
        assert all(ok for ok in (avail[ids.index(g[0])] for g in got))


def test_ties_at_the_cut_are_broken_by_id():
    ids = ["b", "a", "c", "d"]
    lon = [LON0, LON0, LON0, LON0 + 0.01]
    lat = [LAT0 + 0.001] * 3 + [LAT0]
    idx = rules.ResponderIndex(ids, lon, lat)
    assert [i for i, _ in idx.nearest(LON0, LAT0, k=2)] == ["a", "b"]
    assert idx.nearest(LON0, LAT0, k=5, radius_m=50) == []


def test_a_missing_rating_is_a_value_error_not_a_type_error():
    # "rate" without a rating used to reach int(None) and fail with TypeError (an HTTP 500)
    with pytest.raises(ValueError, match="rating must be an integer"):
        rules.check_rating(None)
