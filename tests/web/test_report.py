"""The residents' pages over HTTP (no login): report with a photo, follow by code or link, rate once;
refusals leave every table unchanged; wrong codes look like missing tickets."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from ticket_cases import counts, gps_of, jpeg_with_gps

pytestmark = pytest.mark.db

XSS = "<script>alert(1)</script>"
G1 = {"lon": "121.4812", "lat": "31.2051"}  # inside grid G1 (WGS84)


@pytest.fixture()
def resident(web_db, db_url, tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    app = create_app(Settings(database_url=db_url, upload_dir=tmp_path))
    with TestClient(app, follow_redirects=False) as c:
        c.uploads = tmp_path
        yield c


def _report(client, photos=(), **fields):
    data = {"category": "环境卫生", "description": "楼道堆满杂物 " + XSS, "phone": "13800138000",
            "address": "中山路 1 号", **G1, **fields}
    files = [("photos", (f"p{i}.jpg", b, "image/jpeg")) for i, b in enumerate(photos)]
    return client.post("/report", data=data, files=files or None)


def _ticket(response) -> tuple[str, str]:
    ticket = re.search(r'id="ticket">(\d{12})<', response.text).group(1)
    link = re.search(r'id="follow-link" class="follow" href="([^"]+)"', response.text).group(1)
    return ticket, link.replace("&amp;", "&")


def test_form_opens_without_login(resident):
    page = resident.get("/report")
    assert page.status_code == 200
    for word in ("环境卫生", "设施报修", "矛盾纠纷", "安全隐患", "求助服务", "使用我的位置"):
        assert word in page.text
    assert "script-src 'self';" in page.headers["content-security-policy"]


def test_report_with_photo_then_follow_by_code_and_link(resident, web_db):
    done = _report(resident, photos=[jpeg_with_gps()])
    assert done.status_code == 201, done.text
    ticket, link = _ticket(done)
    with web_db.connect() as c:
        row = c.execute(sa.text("SELECT grid_code, source, category FROM incidents WHERE ticket = :t"),
                        {"t": ticket}).one()
    assert tuple(row) == ("G1", "public", "环境卫生")
    asked = resident.get(f"/report/{ticket}")
    assert asked.status_code == 200 and 'name="code"' in asked.text and "楼道" not in asked.text
    shown = resident.post(f"/report/{ticket}", data={"code": "8000"})
    assert shown.status_code == 200 and "已受理" in shown.text
    assert XSS not in shown.text and "&lt;script&gt;" in shown.text  # the resident's text stays text
    via_link = resident.get(link)
    assert via_link.status_code == 200 and "您的诉求已受理" in via_link.text
    src = re.search(r'<img src="data:image/jpeg;base64,([^"]+)"', via_link.text).group(1)
    import base64

    assert gps_of(base64.b64decode(src)) == {}


def test_wrong_code_reads_like_a_missing_ticket(resident):
    ticket, _ = _ticket(_report(resident))
    wrong = resident.post(f"/report/{ticket}", data={"code": "1234"})
    missing = resident.post("/report/999999999999", data={"code": "8000"})
    assert wrong.status_code == missing.status_code == 404
    assert "没有找到这张工单" in wrong.text and "楼道" not in wrong.text
    strip = lambda t: t.replace(ticket, "T").replace("999999999999", "T")
    assert strip(wrong.text) == strip(missing.text)
    assert resident.get(f"/report/{ticket}?k=guess").status_code == 404


@pytest.mark.parametrize("fields,photos,status,problem", [
    ({"lon": "121.60", "lat": "31.30"}, [], 422, "不在本街道的网格内"),
    ({"website": "http://spam"}, [], 400, "提交失败"),
    ({}, [b"GIF89a" + b"0" * 100], 422, "不是 JPEG"),
    ({}, [jpeg_with_gps()] * 4, 422, "最多上传 3 张"),
    ({"category": "别的"}, [], 422, "请选择事项类别"),
    ({"lon": "", "lat": ""}, [], 422, "使用我的位置"),
    ({"phone": "12"}, [], 422, "手机号格式不对"),
])
def test_refused_reports_change_nothing(resident, web_db, fields, photos, status, problem):
    before = counts(web_db)
    answer = _report(resident, photos=photos, **fields)
    assert answer.status_code == status and problem in answer.text
    assert counts(web_db) == before
    assert not (resident.uploads / "tickets").exists() or not list((resident.uploads / "tickets").iterdir())


def test_anonymous_upload_limit_is_the_named_exception(resident):
    big = b"\xff\xd8\xff" + b"0" * (200 * 1024)  # over the 64 KiB anonymous limit, under the report's
    answer = _report(resident, photos=[big])
    assert answer.status_code == 422 and "无法读取" in answer.text  # reached the route, not 413
    huge = _report(resident, photos=[b"0" * (16 * 1024 * 1024)])
    assert huge.status_code == 413
    assert resident.post("/grids", content=b"0" * (200 * 1024)).status_code == 413  # elsewhere unchanged


def test_rate_once_when_closed_low_rating_flagged(resident, web_db):
    from geodata.store import incidents

    ticket, link = _ticket(_report(resident))
    key = link.split("k=")[1]
    early = resident.post(f"/report/{ticket}/rate", data={"rating": "5", "k": key})
    assert early.status_code == 409 and "办结后才能评价" in early.text
    with web_db.connect() as c:
        iid = c.execute(sa.text("SELECT incident_id FROM incidents WHERE ticket = :t"), {"t": ticket}).scalar_one()
    for action in ("assign", "accept", "close"):
        incidents.transition(web_db, iid, action)
    page = resident.post(f"/report/{ticket}", data={"code": "8000"}).text
    assert "王党员已办结" in page and "王五" not in page  # surname + 党员 only
    assert resident.post(f"/report/{ticket}/rate", data={"rating": "2", "comment": XSS, "code": "0000"}).status_code == 404
    rated = resident.post(f"/report/{ticket}/rate", data={"rating": "2", "comment": XSS, "code": "8000"})
    assert rated.status_code == 200 and "您的评价" in rated.text and XSS not in rated.text
    with web_db.connect() as c:
        row = c.execute(sa.text("SELECT status, rating, rating_comment, flagged FROM incidents WHERE ticket = :t"),
                        {"t": ticket}).one()
    assert tuple(row) == ("rated", 2, XSS, True)
    again = resident.post(f"/report/{ticket}/rate", data={"rating": "5", "code": "8000"})
    assert again.status_code == 409


def test_rate_limits_per_address_and_per_phone(resident, web_db):
    for _ in range(3):
        assert _report(resident).status_code == 201
    per_phone = _report(resident)
    assert per_phone.status_code == 429 and "手机号" in per_phone.text
    assert _report(resident, phone="13900139000").status_code == 201
    assert _report(resident, phone="").status_code == 201
    per_address = _report(resident, phone="")
    assert per_address.status_code == 429 and "提交太频繁" in per_address.text


def test_guessing_codes_is_limited(resident):
    ticket, _ = _ticket(_report(resident))
    for n in range(10):
        assert resident.post(f"/report/{ticket}", data={"code": f"{n:04d}"}).status_code == 404
    assert resident.post(f"/report/{ticket}", data={"code": "8000"}).status_code == 429
