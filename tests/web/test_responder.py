"""The responders' phone page (/responder) and its check-in (签到走访), through the app with a real PostGIS."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from tests.geodata.test_visits import jpeg_with_gps
from tests.web.conftest import csrf_from, login

ID_NUMBER = "330103199001011234"


@pytest.fixture()
def app_client(web_db, db_url, tmp_path):
    """A client of an app whose uploads go to a fresh folder; H1/H2 in building 5 and H1 with an ID number."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    with web_db.begin() as c:
        c.execute(sa.text("UPDATE households SET building = '5', unit = '2', room = '0301', id_number = :i, "
                          "tags = ARRAY['独居老人'] WHERE household_id = 'H1'"), {"i": ID_NUMBER})
        c.execute(sa.text("UPDATE households SET building = '5', unit = '1', room = '0102' WHERE household_id = 'H2'"))
    settings = Settings(database_url=db_url, upload_dir=tmp_path / "uploads")
    with TestClient(create_app(settings), follow_redirects=False) as c:
        c.upload_dir = tmp_path / "uploads"
        yield c


def _count(engine, table: str) -> int:
    with engine.connect() as c:
        return c.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def _page(client) -> str:
    login(client, "resp1")
    r = client.get("/responder")
    assert r.status_code == 200
    return r.text


def _buildings(html: str) -> list[dict]:
    return json.loads(re.search(r'id="buildings-data">(.*?)</script>', html, re.DOTALL).group(1))


def test_page_lists_exactly_my_households_with_phone_address_and_masked_id(app_client, web_db):
    html = _page(app_client)
    ids = re.findall(r'data-household="([^"]+)"', html)
    me = app_client.get("/me/households").json()
    assert ids == [h["household_id"] for h in me] == ["H1", "H2"]
    assert 'href="tel:13812341234"' in html and "5栋2单元0301室" in html and "5栋1单元0102室" in html
    assert ID_NUMBER not in html and "3301**********1234" in html
    assert all(h["id_number"] in (None, "3301**********1234") for h in me)  # /me/households masked too
    assert "尚无记录" in html and "每 7 天" in html and "每 30 天" in html


def test_one_marker_per_building_with_a_numbered_list(app_client, web_db):
    buildings = _buildings(_page(app_client))
    assert len(buildings) == 1 and buildings[0]["label"] == "5栋"
    assert [h["number"] for h in buildings[0]["households"]] == [1, 2]


def test_households_without_a_building_but_within_15_m_share_a_marker():
    from api.usecases.responder import building_groups

    rows = [{"household_id": f"H{i}", "lon": 121.48 + i * 0.00003, "lat": 31.2} for i in range(4)]  # ~3 m apart
    rows.append({"household_id": "FAR", "lon": 121.49, "lat": 31.2})
    groups = building_groups(rows)
    assert [len(g["households"]) for g in groups] == [4, 1]


def _check_in(client, html, household="H1", **fields):
    data = {"csrf_token": csrf_from(html), "household_id": household, "kind": "door", "note": "身体良好",
            "lon": "121.481", "lat": "31.205", "accuracy_m": "12", "coords": "wgs84", **fields}
    files = {"photo": ("p.jpg", fields.pop("photo_bytes", b""), "image/jpeg")} if "photo_bytes" in fields else None
    data.pop("photo_bytes", None)
    return client.post("/responder/visits", data=data, files=files)


def test_check_in_is_stored_audited_and_shown_as_last_visit(app_client, web_db):
    html = _page(app_client)
    r = _check_in(app_client, html, photo_bytes=jpeg_with_gps())
    assert r.status_code == 303 and r.headers["location"] == "/responder?checked=H1"
    with web_db.connect() as c:
        v = c.execute(sa.text("SELECT member_id, kind, note, accuracy_m, distance_m, far, photo_path, photo_sha256, "
                              "ST_X(geom) AS lon FROM visits")).one()
        audit = c.execute(sa.text("SELECT ids FROM audit_log WHERE action = 'visit_write'")).scalar_one()
    assert (v.member_id, v.kind, v.note, v.accuracy_m, v.far) == ("M1", "door", "身体良好", 12.0, False)
    assert v.distance_m < 1 and abs(v.lon - 121.481) < 1e-9 and audit == ["H1"]
    stored = (app_client.upload_dir / v.photo_path).read_bytes()
    assert b"SERIAL-12345" not in stored
    page = app_client.get(r.headers["location"]).text
    assert "已签到" in page and "尚无记录" in page  # H2 still unvisited; H1 now has a last visit
    assert re.search(r'data-household="H2"', page.split('data-household="H1"')[0])  # visited H1 no longer first


def test_gcj02_position_is_converted_and_a_far_visit_is_flagged_not_refused(app_client, web_db):
    from geodata.crs import wgs84_to_gcj02

    html = _page(app_client)
    gx, gy = wgs84_to_gcj02(121.481, 31.205)
    r = _check_in(app_client, html, lon=str(float(gx)), lat=str(float(gy)), coords="gcj02")
    assert r.status_code == 303 and "far" not in r.headers["location"]
    r = _check_in(app_client, html, lon="121.490", lat="31.205")  # ~860 m east
    assert r.status_code == 303 and r.headers["location"].endswith("&far=1")
    with web_db.connect() as c:
        rows = c.execute(sa.text("SELECT distance_m, far FROM visits ORDER BY visit_id")).all()
    assert rows[0].distance_m < 0.01 and not rows[0].far
    assert 800 < rows[1].distance_m < 900 and rows[1].far
    assert "超过 200 米" in app_client.get(r.headers["location"]).text


@pytest.mark.parametrize("household,fields,status", [
    ("H3", {}, 404),                                  # in my region but not linked to me
    ("NOPE", {}, 404),                                # missing: the same answer
    ("H1", {"kind": "visit"}, 400),
    ("H1", {"lat": "121.481", "lon": "31.205"}, 400),  # swapped
    ("H1", {"lon": "abc"}, 400),
    ("H1", {"photo_bytes": b"GIF89a" + b"0" * 40}, 400),
    ("H1", {"csrf_token": "wrong"}, 403),
])
def test_refused_check_ins_change_nothing(app_client, web_db, household, fields, status):
    html = _page(app_client)
    before = (_count(web_db, "visits"), _count(web_db, "audit_log"))
    r = _check_in(app_client, html, household, **fields)
    assert r.status_code == status
    assert (_count(web_db, "visits"), _count(web_db, "audit_log")) == before
    assert not app_client.upload_dir.exists() or not list(app_client.upload_dir.rglob("*.*"))


def test_other_roles_cannot_check_in_or_open_the_page(app_client, web_db):
    login(app_client, "leader1")
    assert app_client.get("/responder").status_code == 403
    html = app_client.get("/leader").text
    r = _check_in(app_client, html)
    assert r.status_code == 403 and _count(web_db, "visits") == 0
