"""Needs over HTTP: the leaders' /needs page, GET /needs/nearby (a responder sees only their own) and
GET /incidents/flagged (region checked); refusals change no table."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.store.test_needs import add_members, add_needs
from tests.web.conftest import login

pytestmark = pytest.mark.db


@pytest.fixture()
def needs_db(web_db):
    add_members(web_db)
    return web_db, add_needs(web_db)


def table_counts(engine) -> dict:
    with engine.connect() as c:
        return {t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("incidents", "incident_events", "members", "audit_log")}


def _token(engine, role, regions, member_id=None):
    from geodata.store import auth

    return {"Authorization": "Bearer " + auth.create_token(engine, role, regions, member_id=member_id)[1]}


def test_leader_sees_needs_beside_skills_with_gaps(client, needs_db):
    engine, _ = needs_db
    login(client, "leader1")
    page = client.get("/needs")
    assert page.status_code == 200
    text = page.text
    assert "中山社区（C1）" in text and "需求清单" in text and "资源清单" in text
    assert 'id="gap-count">2<' in text and 'id="met-count">1<' in text
    assert "赵M2（M2）" in text  # the member who can meet the 法律 need, name beside the id
    assert "具备“医疗”技能的在岗党员" in text and "具备“心理”技能的在岗党员" in text
    assert "第一网格（G1）" in text
    with engine.connect() as c:
        audited = c.execute(sa.text("SELECT ids FROM audit_log WHERE action = 'pii_read' AND what = 'members'")).all()
    assert audited and "M2" in audited[-1][0]


def test_other_regions_community_is_the_missing_page_and_changes_nothing(client, needs_db):
    engine, _ = needs_db
    login(client, "leader2")  # street S2 only
    before = table_counts(engine)
    foreign, missing = client.get("/needs?community=C1"), client.get("/needs?community=NOPE")
    assert foreign.status_code == missing.status_code == 404
    assert "赵M2" not in foreign.text and foreign.text == missing.text
    assert table_counts(engine) == before
    login(client, "resp1")
    assert client.get("/needs").status_code == 403


def test_nearby_needs_only_for_oneself(client, needs_db):
    engine, ids = needs_db
    m2 = _token(engine, "responder", ["C1"], member_id="M2")
    mine = client.get("/needs/nearby", params={"member_id": "M2"}, headers=m2)
    assert mine.status_code == 200
    rows = mine.json()
    assert [r["incident_id"] for r in rows] == [ids["法律"]] and 150 < rows[0]["distance_m"] < 200
    assert not {"name", "phone", "reporter_phone_hash", "ticket"} & set(rows[0])
    before = table_counts(engine)
    other = client.get("/needs/nearby", params={"member_id": "M3"}, headers=m2)
    missing = client.get("/needs/nearby", params={"member_id": "NOPE"}, headers=m2)
    assert other.status_code == missing.status_code == 404 and other.json() == missing.json()
    leader_s2 = _token(engine, "leader", ["S2"])
    assert client.get("/needs/nearby", params={"member_id": "M2"}, headers=leader_s2).status_code == 404
    leader_s1 = _token(engine, "leader", ["S1"])
    assert client.get("/needs/nearby", params={"member_id": "M2"}, headers=leader_s1).json() == rows
    assert table_counts(engine) == before


def test_flagged_incidents_by_region(client, needs_db):
    from geodata.store import incidents, tickets

    engine, ids = needs_db
    iid = ids["环境卫生"]
    for action in ("assign", "accept", "close"):
        incidents.transition(engine, iid, action, member_id="M1" if action == "assign" else None)
    tickets.rate_ticket(engine, iid, 1, "没人来")
    leader = _token(engine, "leader", ["S1"])
    got = client.get("/incidents/flagged", params={"region": "C1"}, headers=leader)
    assert got.status_code == 200
    assert [(r["incident_id"], r["rating"], r["rating_comment"]) for r in got.json()] == [(iid, 1, "没人来")]
    assert client.get("/incidents/flagged", params={"region": "S1"}, headers=leader).json()[0]["incident_id"] == iid
    assert client.get("/incidents/flagged", params={"region": "G2"}, headers=leader).json() == []
    before = table_counts(engine)
    outside = client.get("/incidents/flagged", params={"region": "C1"}, headers=_token(engine, "leader", ["S2"]))
    missing = client.get("/incidents/flagged", params={"region": "NOPE"}, headers=leader)
    assert outside.status_code == missing.status_code == 404 and outside.json() == missing.json()
    responder = _token(engine, "responder", ["C1"], member_id="M1")
    assert client.get("/incidents/flagged", params={"region": "C1"}, headers=responder).status_code == 403
    assert table_counts(engine) == before


def test_report_categories_come_from_the_setting(web_db, db_url, tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings
    from api.usecases.reports_public import DEFAULT_CATEGORIES

    assert Settings(database_url=db_url).report_categories == DEFAULT_CATEGORIES
    settings = Settings(database_url=db_url, upload_dir=tmp_path, report_categories=("垃圾分类", "求助服务"))
    with TestClient(create_app(settings), follow_redirects=False) as c:
        form = c.get("/report").text
        assert "垃圾分类" in form and "环境卫生" not in form
        before = table_counts(web_db)
        refused = c.post("/report", data={"category": "环境卫生", "description": "楼道堆满杂物", "lon": "121.4812",
                                          "lat": "31.2051"})
        assert refused.status_code == 422 and table_counts(web_db) == before
        made = c.post("/report", data={"category": "垃圾分类", "description": "垃圾桶满了", "lon": "121.4812",
                                       "lat": "31.2051"})
        assert made.status_code == 201
    with web_db.connect() as conn:
        assert conn.execute(sa.text("SELECT category FROM incidents WHERE source = 'public'")).scalar_one() == "垃圾分类"


def test_report_categories_read_from_the_environment(monkeypatch):
    from api.settings import Settings

    monkeypatch.setenv("GRIDMAP_REPORT_CATEGORIES", '["环境卫生", "求助服务"]')
    assert Settings().report_categories == ("环境卫生", "求助服务")
