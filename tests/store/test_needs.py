"""Needs (需求清单) matched to members' skills within the service radius, in the real PostGIS.

Hand-built: in community C1 a 法律 need with a 法律 member 175 m away (met), a 医疗 need whose only 医疗
member is about 1.7 km away (out of reach: a gap), and a 心理 need whose only 心理 member is 离岗 (a gap).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.web.conftest import _h3, seed_region

pytestmark = pytest.mark.db

HELP = "求助服务"
NEED_POINT = (121.4812, 31.2051)  # in grid G1 (WGS84)
# member id, grid, skills, available, lon, lat (WGS84)
SKILLED = (("M2", "G1", ["法律", "维修"], True, 121.4830, 31.2055),
           ("M3", "G2", ["医疗"], True, 121.4990, 31.2090),
           ("M4", "G1", ["心理"], False, 121.4813, 31.2052))


def add_members(engine, members=SKILLED) -> None:
    with engine.begin() as c:
        for mid, grid, skills, available, lon, lat in members:
            c.execute(sa.text("INSERT INTO members (member_id, grid_code, skills, available, name, phone, h3, geom) "
                              "VALUES (:m, :g, :s, :a, :n, '13900000000', :cell, "
                              "ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
                      {"m": mid, "g": grid, "s": skills, "a": available, "n": f"赵{mid}", "x": lon, "y": lat,
                       "cell": _h3(lat, lon)})


def add_needs(engine) -> dict[str, str]:
    """Three open needs at NEED_POINT (法律, 医疗, 心理) and one 环境卫生 incident; skill → incident id."""
    from geodata.store import incidents

    ids = {}
    for skill in ("法律", "医疗", "心理"):
        ids[skill] = incidents.create_incident(engine, lon=NEED_POINT[0], lat=NEED_POINT[1], category=HELP,
                                               required_skill=skill, source="public")["incident_id"]
    ids["环境卫生"] = incidents.create_incident(engine, lon=NEED_POINT[0], lat=NEED_POINT[1],
                                            category="环境卫生")["incident_id"]
    return ids


@pytest.fixture()
def needs_region(engine):
    seed_region(engine)
    add_members(engine)
    return engine, add_needs(engine)


def test_each_need_is_matched_within_reach_or_is_a_gap(needs_region):
    from geodata.store import needs

    engine, _ = needs_region
    rows = {r["required_skill"]: r for r in needs.community_needs(engine, "C1", category=HELP)}
    assert set(rows) == {"法律", "医疗", "心理"}  # the 环境卫生 incident is no need
    assert [m["member_id"] for m in rows["法律"]["matches"]] == ["M2"]
    assert 150 < rows["法律"]["matches"][0]["distance_m"] < 200  # metres, not degrees
    assert rows["医疗"]["matches"] == []  # M3 is ~1.7 km away
    assert rows["心理"]["matches"] == []  # M4 is near but 离岗
    wide = {r["required_skill"]: r for r in needs.community_needs(engine, "C1", category=HELP, radius_m=2500)}
    assert [m["member_id"] for m in wide["医疗"]["matches"]] == ["M3"]
    assert needs.community_needs(engine, "C9", category=HELP) == []


def test_closed_needs_leave_the_list(needs_region):
    from geodata.store import incidents, needs

    engine, ids = needs_region
    for action in ("assign", "accept", "close"):
        incidents.transition(engine, ids["法律"], action, member_id="M2" if action == "assign" else None)
    assert {r["required_skill"] for r in needs.community_needs(engine, "C1", category=HELP)} == {"医疗", "心理"}


def test_needs_near_a_member_fit_their_skills_and_reach(needs_region):
    from geodata.store import needs
    from geodata.store.incidents import NotFound

    engine, ids = needs_region
    near = needs.needs_near_member(engine, "M2", category=HELP)
    assert [r["incident_id"] for r in near] == [ids["法律"]]
    assert needs.needs_near_member(engine, "M3", category=HELP) == []  # 医疗 need out of reach
    assert [r["incident_id"] for r in needs.needs_near_member(engine, "M3", category=HELP, radius_m=2500)] == [ids["医疗"]]
    with pytest.raises(NotFound):
        needs.needs_near_member(engine, "nobody", category=HELP)


def test_skill_supply_counts_available_members_only(needs_region):
    from geodata.store import needs

    engine, _ = needs_region
    members = needs.community_members(engine, "C1")
    assert [m["member_id"] for m in members] == ["M1", "M2", "M4", "M3"]  # by grid, then id
    assert needs.skill_supply(members) == {"医疗": 1, "法律": 1, "维修": 1}
