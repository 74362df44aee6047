"""The planners' pages through the app (TestClient, real PostGIS): upload → check → import, staffing table."""

from __future__ import annotations

import io

import openpyxl
import pytest
import sqlalchemy as sa

from api.settings import get_settings
from geodata.store.importer import table_counts
from tests.geodata.test_roster_check import good_rows, plant_five, planted_workbook
from tests.web.conftest import csrf_from, login


@pytest.fixture(autouse=True)
def upload_dir(tmp_path, monkeypatch):
    """Uploads go to this test's own folder, not the working tree."""
    monkeypatch.setenv("GRIDMAP_UPLOAD_DIR", str(tmp_path / "uploads"))
    get_settings.cache_clear()
    yield tmp_path / "uploads"
    get_settings.cache_clear()


def _rows_in_c1() -> list[list]:
    """Eight good households inside grid G1 of the seeded region (H001…), Excel rows 3–10."""
    rows = good_rows()
    for r in rows:
        r[5] = 121.4805 + int(r[0][1:]) * 0.001
        r[7] = "G1"
    return rows


def _upload(client, path, layer="households"):
    page = client.get("/planner/upload")
    with open(path, "rb") as f:
        return client.post("/planner/upload", data={"csrf_token": csrf_from(page.text), "layer": layer, "coords": "wgs84"},
                           files={"file": (path.name, f, "application/octet-stream")})


def _audits(engine, action):
    with engine.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = :a"), {"a": action}).scalar_one()


def test_planted_mistakes_listed_then_fixed_file_imports(client, web_db, tmp_path):
    login(client, "planner1")
    rows = _rows_in_c1()
    expected = plant_five(rows)
    bad = tmp_path / "花名册.xlsx"
    planted_workbook(bad, rows)
    r = _upload(client, bad)
    assert r.status_code == 303
    check = client.get(r.headers["location"])
    assert check.status_code == 200
    assert "发现 5 个问题" in check.text and "备注" in check.text
    for row, header in expected.items():
        assert f'<td class="row">{row}</td><td>{header}</td>' in check.text
    assert "13812340007" not in check.text  # a resident's phone shown masked to a planner
    download = client.get(r.headers["location"].replace("?", "/problems.xlsx?"))
    assert download.status_code == 200
    wb = openpyxl.load_workbook(io.BytesIO(download.content))
    assert wb.sheetnames[0] == "问题汇总" and _audits(web_db, "download_problems") == 1
    before = table_counts(web_db)
    refused = client.post(r.headers["location"].split("?")[0] + "/import",
                          data={"csrf_token": csrf_from(client.get("/planner/upload").text), "layer": "households",
                                "coords": "wgs84", "sheet": "住户"})
    assert refused.status_code == 422 and table_counts(web_db) == before

    good = tmp_path / "花名册-改好.xlsx"
    planted_workbook(good, _rows_in_c1())
    r = _upload(client, good)
    check = client.get(r.headers["location"])
    assert "没有发现问题" in check.text
    done = client.post(r.headers["location"].split("?")[0] + "/import",
                       data={"csrf_token": csrf_from(check.text), "layer": "households", "coords": "wgs84", "sheet": "住户"})
    assert done.status_code == 200, done.text
    assert 'data-count="inserted">8<' in done.text
    with web_db.connect() as c:
        n, sizes = c.execute(sa.text("SELECT count(*), sum(size) FROM households WHERE household_id LIKE 'H0%'")).one()
    assert (n, sizes) == (8, 24)
    assert _audits(web_db, "import") == 1
    assert client.get(r.headers["location"]).status_code == 404  # the upload (personal data) is gone


def test_upload_of_another_account_is_404_and_wrong_role_403(client, web_db, tmp_path):
    login(client, "planner1")
    path = tmp_path / "h.xlsx"
    planted_workbook(path, _rows_in_c1())
    location = _upload(client, path).headers["location"]
    client.cookies.clear()
    login(client, "admin1")
    assert client.get(location).status_code == 404
    assert client.get("/planner/upload/" + "x" * 32).status_code == 404
    client.cookies.clear()
    login(client, "leader1")
    assert client.get("/planner/upload").status_code == 403
    assert client.get("/planner/grids").status_code == 403


def test_rows_outside_the_planners_street_are_refused(client, web_db, tmp_path):
    login(client, "planner1")
    rows = _rows_in_c1()
    rows[0][5], rows[0][7] = 121.505, None  # Excel row 3: in G9, street S2
    path = tmp_path / "h.xlsx"
    planted_workbook(path, rows)
    check = client.get(_upload(client, path).headers["location"])
    assert "发现 1 个问题" in check.text and "管辖范围" in check.text and '<td class="row">3</td>' in check.text


def test_staffing_table_and_excel(client, web_db):
    login(client, "planner1")
    page = client.get("/planner/grids")
    assert page.status_code == 200
    assert "第一网格（G1）" in page.text and "G9" not in page.text  # S2's grid is not the planner's
    assert "未建党支部" in page.text  # G2 has no branch
    xlsx = client.get("/planner/grids.xlsx")
    ws = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    header = [c.value for c in ws[1]]
    rows = {r[0]: dict(zip(header, r)) for r in ws.iter_rows(min_row=2, values_only=True)}
    assert set(rows) == {"G1", "G2"}
    assert rows["G1"]["住户数"] == 3 and rows["G1"]["需配网格员"] == 1 and rows["G1"]["已联户数"] == 2
    assert rows["G2"]["需配网格员"] == 0 and rows["G2"]["空白网格原因"] == "未建党支部"
