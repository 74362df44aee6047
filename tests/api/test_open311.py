"""Open311 GeoReport v2 with plain httpx calls written from the spec (http://wiki.open311.org/GeoReport_v2):
services, POST with api_key, GET with filters, JSON and XML, errors in the spec's shape, nothing private."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from xml.etree import ElementTree as ET

import pytest

from ticket_cases import counts
from tests.web.conftest import seed_region

pytestmark = pytest.mark.db

V2 = "/open311/v2"
PLACE = {"lat": "31.2051", "long": "121.4812"}  # inside grid G1 (S1)


@pytest.fixture()
def seeded(engine):
    """The test database with the small region of the web tests (street S1 → C1 → G1, G2; S2 → G9)."""
    seed_region(engine)
    return engine


@pytest.fixture()
def api(seeded, db_url, tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings
    from geodata.store import auth as store

    with TestClient(create_app(Settings(database_url=db_url, upload_dir=tmp_path))) as c:
        c.dispatcher = store.create_token(seeded, "dispatcher", ["S1"], label="open311")[1]
        c.other_street = store.create_token(seeded, "dispatcher", ["S2"], label="open311")[1]
        c.viewer = store.create_token(seeded, "viewer", ["*"], label="open311")[1]
        yield c


def _post(api, key, **fields):
    data = {"api_key": key, "service_code": "001", "description": "路灯不亮", "phone": "13800138000",
            "email": "a@example.com", "address_string": "中山路 1 号 3 室", **PLACE, **fields}
    return api.post(f"{V2}/requests.json", data=data)


def test_discovery_and_services_as_json_and_xml(api):
    d = api.get(f"{V2}/discovery.json").json()
    assert d["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"
    services = api.get(f"{V2}/services.json").json()
    assert {s["service_name"] for s in services} >= {"环境卫生", "求助服务"}
    assert all(set(s) >= {"service_code", "service_name", "metadata", "type"} for s in services)
    xml = api.get(f"{V2}/services.xml")
    assert xml.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(xml.content)
    assert root.tag == "services" and root[0].tag == "service" and root[0].find("metadata").text == "false"
    assert api.get(f"{V2}/services/001.json").json() == {"service_code": "001", "attributes": []}
    missing = api.get(f"{V2}/services/999.json")
    assert missing.status_code == 404 and missing.json()[0]["code"] == 404


def test_post_then_get_publishes_no_phone_email_or_address(api, seeded):
    made = _post(api, api.dispatcher)
    assert made.status_code == 201, made.text
    rid = made.json()[0]["service_request_id"]
    one = api.get(f"{V2}/requests/{rid}.json").json()
    assert len(one) == 1 and one[0]["status"] == "open" and one[0]["service_code"] == "001"
    assert one[0]["status_notes"].startswith("reported")
    assert datetime.fromisoformat(one[0]["requested_datetime"]).utcoffset() == timedelta(hours=8)
    assert (one[0]["lat"], one[0]["long"]) == (31.205, 121.481)  # rounded to about 100 m
    text = api.get(f"{V2}/requests.json").text + api.get(f"{V2}/requests/{rid}.xml").text
    for private in ("13800138000", "8000", "a@example.com", "3 室"):
        assert private not in text.replace(rid, "")
    assert api.get(f"{V2}/tokens/{rid}.json").json() == [{"service_request_id": rid, "token": rid}]
    xml = ET.fromstring(api.get(f"{V2}/requests/{rid}.xml").content)
    assert xml.tag == "service_requests" and xml.find("request/service_request_id").text == rid


def test_filters(api, seeded):
    first = _post(api, api.dispatcher).json()[0]["service_request_id"]
    second = _post(api, api.dispatcher, service_code="005", phone="").json()[0]["service_request_id"]
    ids = lambda r: [x["service_request_id"] for x in r.json()]
    assert ids(api.get(f"{V2}/requests.json", params={"service_code": "005"})) == [second]
    assert sorted(ids(api.get(f"{V2}/requests.json", params={"service_request_id": f"{first},{second}"}))) == sorted(
        [first, second])
    assert ids(api.get(f"{V2}/requests.json", params={"status": "closed"})) == []
    old = {"start_date": "2020-01-01T00:00:00+08:00", "end_date": "2020-02-01T00:00:00+08:00"}
    assert ids(api.get(f"{V2}/requests.json", params=old)) == []
    too_long = api.get(f"{V2}/requests.json", params={"start_date": "2020-01-01T00:00:00Z", "end_date": "2020-06-01T00:00:00Z"})
    assert too_long.status_code == 400 and "90 days" in too_long.json()[0]["description"]
    bad = api.get(f"{V2}/requests.xml", params={"start_date": "yesterday"})
    assert bad.status_code == 400 and ET.fromstring(bad.content).find("error/code").text == "400"


@pytest.mark.parametrize("who,fields,status", [
    (None, {}, 403), ("viewer", {}, 403), ("other_street", {}, 400), ("dispatcher", {"service_code": "999"}, 400),
    ("dispatcher", {"description": ""}, 400), ("dispatcher", {"lat": "", "long": ""}, 400),
])
def test_refused_posts_change_nothing(api, seeded, who, fields, status):
    before = counts(seeded)
    answer = _post(api, getattr(api, who) if who else "gm_wrong", **fields)
    assert answer.status_code == status and set(answer.json()[0]) == {"code", "description"}
    assert counts(seeded) == before


# -- the deployment's report categories (GRIDMAP_REPORT_CATEGORIES) are the services ---------------------

CONFIGURED = ("环境卫生", "养犬管理", "求助服务")


@pytest.fixture()
def configured(seeded, db_url, tmp_path):
    """The app of a deployment whose residents choose among three categories, one of them its own."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings
    from geodata.store import auth as store

    settings = Settings(database_url=db_url, upload_dir=tmp_path, report_categories=CONFIGURED)
    with TestClient(create_app(settings)) as c:
        c.dispatcher = store.create_token(seeded, "dispatcher", ["S1"], label="open311")[1]
        yield c


def test_services_are_the_deployments_categories_with_stable_ascii_codes(configured):
    from api.usecases.open311 import service_code

    services = configured.get(f"{V2}/services.json").json()
    dogs = service_code("养犬管理")
    assert [(s["service_code"], s["service_name"]) for s in services] == [
        ("001", "环境卫生"), (dogs, "养犬管理"), ("005", "求助服务")]  # the default categories keep their codes
    assert dogs.isascii() and re.fullmatch(r"c[0-9a-f]{8}", dogs) and service_code("养犬管理 ") == dogs
    assert "接单 24 小时内" in services[1]["description"]
    xml = ET.fromstring(configured.get(f"{V2}/services.xml").content)
    assert [el.find("service_name").text for el in xml] == list(CONFIGURED)
    assert configured.get(f"{V2}/services/{dogs}.json").json() == {"service_code": dogs, "attributes": []}
    assert configured.get(f"{V2}/services/002.json").status_code == 404  # 设施报修 is not offered here


@pytest.mark.parametrize("code", ["002", "c00000000", "设施报修"])
def test_a_service_code_outside_the_deployments_categories_is_refused_and_writes_nothing(configured, seeded, code):
    before = counts(seeded)
    answer = _post(configured, configured.dispatcher, service_code=code)
    assert answer.status_code == 400
    [error] = answer.json()
    assert set(error) == {"code", "description"} and error["code"] == 400 and "service_code" in error["description"]
    assert counts(seeded) == before


def test_a_request_of_the_deployments_own_category_is_filed_and_found_by_its_code(configured, seeded):
    from api.usecases.open311 import service_code

    dogs = service_code("养犬管理")
    made = _post(configured, configured.dispatcher, service_code=dogs)
    assert made.status_code == 201, made.text
    rid = made.json()[0]["service_request_id"]
    found = configured.get(f"{V2}/requests.json", params={"service_code": dogs}).json()
    assert [(r["service_request_id"], r["service_code"], r["service_name"]) for r in found] == [(rid, dogs, "养犬管理")]
    assert configured.get(f"{V2}/requests.json", params={"service_code": "001"}).json() == []
