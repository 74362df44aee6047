"""The leaders' page (/leader) through TestClient against the real PostGIS: every figure equals the JSON
routes' figure for the same region and window, drill-down and breadcrumb, region checks (same 404),
masking and audit of member names, the ranking switch, and nothing written by a refused request."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.web.conftest import login


def _figures(html: str) -> dict[str, str]:
    """``data-key`` → ``data-value`` of the page's figure cards."""
    return dict(re.findall(r'data-key="([a-z_]+)" data-value="([^"]*)"', html))


def _num(v):
    return None if v in ("", None) else float(v)


def _token(engine, role, regions):
    from geodata.store import auth as store

    _, tok = store.create_token(engine, role, regions)
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture()
def incidents(web_db):
    """Three incidents in G1: one closed on time and rated 5, one open and overdue held by M1, one fresh."""
    from geodata.store.incidents import create_incident, transition

    now = datetime.now(UTC)
    create_incident(web_db, lon=121.485, lat=31.205, category="环境卫生", reported_at=now - timedelta(hours=30),
                    incident_id="I-ok")
    transition(web_db, "I-ok", "assign", member_id="M1", at=now - timedelta(hours=29))
    transition(web_db, "I-ok", "accept", at=now - timedelta(hours=28))
    transition(web_db, "I-ok", "close", at=now - timedelta(hours=20))
    transition(web_db, "I-ok", "rate", rating=5, at=now - timedelta(hours=19))
    create_incident(web_db, lon=121.485, lat=31.205, category="环境卫生", reported_at=now - timedelta(hours=50),
                    incident_id="I-late")
    transition(web_db, "I-late", "assign", member_id="M1", at=now - timedelta(hours=49))
    create_incident(web_db, lon=121.485, lat=31.205, category="矛盾纠纷", reported_at=now - timedelta(hours=1),
                    incident_id="I-new")
    return web_db


@pytest.mark.parametrize("region", ["S1", "C1", "G1"])
def test_every_figure_on_the_page_equals_the_json(client, incidents, region):
    login(client, "leader1")
    page = client.get("/leader", params={"region": region})
    assert page.status_code == 200, page.text
    shown = _figures(page.text)
    headers = _token(incidents, "leader", ["S1"])
    summary = client.get("/coverage", params={"region": region}, headers=headers).json()["summary"]
    stats = client.get("/incidents/stats", params={"region": region}, headers=headers).json()["total"]
    for key in ("branch_pct", "linked_pct", "members_needed", "within_straight_pct", "in_band_pct", "grid_workers"):
        assert _num(shown[key]) == _num(summary.get(key)), key
    for key in ("red", "yellow", "green", "incidents", "acceptance_pct", "on_time_close_pct", "closed_pct",
                "avg_response_hours", "satisfaction_pct"):
        assert _num(shown[key]) == _num(stats[key]), key
    assert stats["incidents"] == 3 and stats["red"] == 1
    coverage = client.get("/coverage", params={"region": region}, headers=headers).json()
    level = {"S1": ("communities", "community_code"), "C1": ("grids", "grid_code")}.get(region)
    if level:  # the drill-down table: the next level's figures, row by row
        rows = re.findall(r'<tr data-code="([^"]+)">.*?data-value="([^"]*)"', page.text, re.DOTALL)
        expected = {r[level[1]]: r["link_coverage_pct"] for r in coverage[level[0]]}
        assert rows and {code: _num(v) for code, v in rows} == expected


def test_window_and_category_filter_the_page_like_the_json(client, incidents):
    login(client, "leader1")
    params = {"region": "S1", "category": "环境卫生"}
    shown = _figures(client.get("/leader", params=params).text)
    stats = client.get("/incidents/stats", params=params, headers=_token(incidents, "leader", ["S1"])).json()["total"]
    assert _num(shown["incidents"]) == stats["incidents"] == 2


def test_breadcrumb_names_and_drill_down(client, incidents):
    login(client, "leader1")
    street = client.get("/leader").text  # opens on the user's region S1
    assert "外滩街道" in street and 'href="/leader?region=C1"' in street and "中山社区" in street
    community = client.get("/leader", params={"region": "C1"}).text
    assert 'href="/leader?region=S1"' in community  # breadcrumb back up
    assert 'href="/leader?region=G1"' in community and "第一网格" in community and "第二网格" in community
    grid = client.get("/leader", params={"region": "G2"}).text
    assert "未建党支部" in grid  # G2 is a blank grid, with its reason


def test_other_regions_and_unknown_codes_get_the_same_404_and_write_nothing(client, incidents):
    login(client, "leader1")
    with incidents.connect() as c:
        before = c.execute(sa.text("SELECT (SELECT count(*) FROM audit_log), (SELECT count(*) FROM incidents)")).one()
    other = client.get("/leader", params={"region": "S2"})
    missing = client.get("/leader", params={"region": "NOPE"})
    assert other.status_code == missing.status_code == 404 and other.text == missing.text
    assert "南京" not in other.text
    with incidents.connect() as c:
        after = c.execute(sa.text("SELECT (SELECT count(*) FROM audit_log), (SELECT count(*) FROM incidents)")).one()
    assert after == before
    assert client.get("/leader", params={"region": "S1", "from": "2026-13-01"}).status_code == 422


def test_member_names_shown_to_leader_are_audited_and_masked_for_viewer(client, incidents):
    from geodata.store import users
    from tests.web.conftest import PASSWORD

    login(client, "leader1")
    page = client.get("/leader", params={"region": "S1"}).text
    assert "王五" in page and "I-late" in page  # the overdue incident and who holds it
    with incidents.connect() as c:
        audited = c.execute(sa.text("SELECT ids FROM audit_log WHERE action = 'pii_read' AND what = 'members'")).all()
    assert audited and all(list(r.ids) == ["M1"] for r in audited)
    users.create_user(incidents, "viewer1", PASSWORD, "viewer", ["S1"])
    client.cookies.clear()
    login(client, "viewer1")
    page = client.get("/leader", params={"region": "S1"}).text
    assert "王五" not in page and "王*" in page
    assert "13812341234" not in page  # no resident's phone anywhere on the page


def test_ranking_can_be_switched_off(client, incidents):
    login(client, "leader1")
    on = client.get("/leader", params={"region": "S1"}).text
    off = client.get("/leader", params={"region": "S1", "ranking": "off"}).text
    assert "亮晒比拼" in on and "<th>名次</th>" in on
    assert "<th>名次</th>" not in off and "排名已关闭" in off


def test_responder_cannot_open_the_leader_page(client, incidents):
    login(client, "resp1")
    assert client.get("/leader", params={"region": "C1"}).status_code == 403


def test_excel_has_a_sheet_per_level_with_header_names_and_numbers(client, incidents):
    import io

    from openpyxl import load_workbook

    login(client, "leader1")
    page = client.get("/leader", params={"region": "S1", "category": "环境卫生"}).text
    assert 'href="/leader/report.xlsx?region=S1&amp;category=' in page
    r = client.get("/leader/report.xlsx", params={"region": "S1", "from": "2020-01-01"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxmlformats")
    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["街道", "社区", "网格", "党员", "超时事件"]
    street = wb["街道"]
    assert "外滩街道" in street["A1"].value and "2020-01-01" in street["A2"].value
    assert street["A3"].value.startswith("数据日期") and street["A4"].value.startswith("数据来源")
    headers = [c.value for c in street[6]]
    assert headers[:2] == ["街道编码", "街道名称"]
    row = {h: c.value for h, c in zip(headers, street[7])}
    assert row["街道编码"] == "S1" and row["街道名称"] == "外滩街道"
    assert row["住户"] == 3 and isinstance(row["住户"], int)
    assert abs(row["联户率"] - 2 / 3) < 1e-3 and street.cell(7, headers.index("联户率") + 1).number_format == "0.0%"
    assert row["事件数"] == 3 and row["红灯"] == 1
    grids = wb["网格"]
    names = {grids.cell(r, 1).value: grids.cell(r, 2).value for r in range(7, grids.max_row + 1)}
    assert names == {"G1": "第一网格", "G2": "第二网格"}
    overdue = wb["超时事件"]
    assert overdue.cell(7, 1).value == "I-late" and overdue.cell(7, 6).value == "王五"
    with incidents.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'export'")).scalar() == 1


def test_excel_of_another_region_is_the_same_404(client, incidents):
    login(client, "leader1")
    assert client.get("/leader/report.xlsx", params={"region": "S2"}).status_code == 404
    assert client.get("/leader/report.xlsx", params={"region": "NOPE"}).status_code == 404
