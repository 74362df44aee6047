"""The leader map's extra layers and the members' visits, through TestClient against the real PostGIS:
the heat is drawn from exactly the page's window and category, centres come with metric 1,000 m
circles, proposed sites cover the households outside every circle, GCJ-02 shifts every coordinate,
every route answers the same 404 for another region and a missing one, and the members' visits in
30 days are equal on the page, in the JSON and in the Excel sheet."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from tests.web.conftest import login
from tests.web.test_leader import incidents  # noqa: F401 (fixture)

LAYERS = ("/leader/layers/heat.geojson", "/leader/layers/centres.geojson", "/leader/layers/sites.geojson",
          "/leader/members.json")
#: A centre 1.5 km east of the households: they lie outside its circle, so a new site is proposed.
CENTRE = (121.499, 31.205)


def add_centre(engine, centre_id="SC1", lon=CENTRE[0], lat=CENTRE[1]):
    import h3

    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO service_centres (centre_id, name, kind, h3, geom) VALUES "
                          "(:id, '外滩党群服务中心', 'centre', :cell, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
                  {"id": centre_id, "cell": h3.str_to_int(h3.latlng_to_cell(lat, lon, 10)), "x": lon, "y": lat})


@pytest.fixture()
def layered(incidents):  # noqa: F811
    """The incidents of test_leader, one more in 2020 (closed), a service centre, and M1's visits."""
    from geodata.store.incidents import create_incident, transition
    from geodata.store.visits import NewVisit, record_visit

    old = datetime(2020, 5, 1, 2, tzinfo=UTC)
    create_incident(incidents, lon=121.495, lat=31.206, category="环境卫生", reported_at=old, incident_id="I-2020")
    transition(incidents, "I-2020", "assign", member_id="M1", at=old + timedelta(hours=1))
    transition(incidents, "I-2020", "accept", at=old + timedelta(hours=2))
    transition(incidents, "I-2020", "close", at=old + timedelta(hours=3))
    add_centre(incidents)
    now = datetime.now(UTC)
    for household, days in (("H1", 2), ("H2", 10), ("H1", 40)):
        record_visit(incidents, NewVisit("M1", household, now - timedelta(days=days), "door"))
    return incidents


def _features(body, shape=None):
    return [f for f in body["features"] if shape is None or f["properties"].get("shape") == shape]


def test_heat_counts_exactly_the_window_and_category(client, layered):
    login(client, "leader1")
    everything = client.get("/leader/layers/heat.geojson", params={"region": "S1"}).json()
    assert everything["incidents"] == 4 and sum(f["properties"]["n"] for f in everything["features"]) == 4
    only_2020 = client.get("/leader/layers/heat.geojson",
                           params={"region": "S1", "from": "2020-01-01", "to": "2020-12-31"}).json()
    assert only_2020["window"] == {"from": "2020-01-01", "to": "2020-12-31", "category": None}
    assert [(f["properties"]["n"], f["properties"]["open"]) for f in only_2020["features"]] == [(1, 0)]
    disputes = client.get("/leader/layers/heat.geojson", params={"region": "S1", "category": "矛盾纠纷"}).json()
    assert [f["properties"]["n"] for f in disputes["features"]] == [1]
    stats = client.get("/incidents/stats", params={"region": "S1", "category": "矛盾纠纷"},
                       headers=_token(layered)).json()["total"]
    assert stats["incidents"] == 1  # the heat and the figures read the same window
    text = str(everything)
    assert "I-ok" not in text and "I-late" not in text and "王五" not in text  # counts only


def test_centres_come_with_a_metric_circle_of_1000_m(client, layered):
    from gridmap.metric import haversine_m

    login(client, "leader1")
    body = client.get("/leader/layers/centres.geojson", params={"region": "S1"}).json()
    assert body["basis"] == "straight" and "直线" in body["basis_label"]
    (point,) = _features(body, "centre")
    (area,) = _features(body, "area")
    assert point["properties"]["name"] == "外滩党群服务中心" and area["properties"]["radius_m"] == 1000
    ring = np.array(area["geometry"]["coordinates"][0])
    d = haversine_m(CENTRE[0], CENTRE[1], ring[:, 0], ring[:, 1])
    assert np.all(np.abs(d - 1000.0) < 5.0)  # metres on the ground, not a degree radius
    assert ring[:, 0].max() - ring[:, 0].min() > ring[:, 1].max() - ring[:, 1].min() + 0.002  # wider in lon at 31°N


def test_sites_cover_the_households_outside_every_circle(client, layered):
    login(client, "leader1")
    body = client.get("/leader/layers/sites.geojson", params={"region": "S1"}).json()
    assert body["uncovered"] == 3 and body["optimal"] is True
    (site,) = _features(body, "site")
    assert site["properties"]["rank"] == 1 and site["properties"]["newly_covered"] == 3
    assert len(_features(body, "area")) == 1
    add_centre(layered, "SC2", 121.482, 31.205)  # a centre among the households: nothing left to propose
    assert client.get("/leader/layers/sites.geojson", params={"region": "S1"}).json()["features"] == []


def test_gcj02_shifts_every_layer(client, layered):
    from geodata.crs import wgs84_to_gcj02

    login(client, "leader1")
    plain = client.get("/leader/layers/centres.geojson", params={"region": "S1"}).json()
    shifted = client.get("/leader/layers/centres.geojson", params={"region": "S1", "coords": "gcj02"}).json()
    (p,), (q,) = _features(plain, "centre"), _features(shifted, "centre")
    x, y = wgs84_to_gcj02(np.array([CENTRE[0]]), np.array([CENTRE[1]]))
    assert q["geometry"]["coordinates"] == pytest.approx([float(x[0]), float(y[0])], abs=1e-9)
    assert abs(q["geometry"]["coordinates"][0] - p["geometry"]["coordinates"][0]) > 1e-3
    heat = client.get("/leader/layers/heat.geojson", params={"region": "S1", "coords": "gcj02"}).json()
    assert heat["coords"] == "gcj02"


@pytest.mark.parametrize("path", LAYERS)
def test_other_region_and_missing_region_get_the_same_404(client, layered, path):
    login(client, "leader1")
    other = client.get(path, params={"region": "S2"})
    missing = client.get(path, params={"region": "NOPE"})
    assert other.status_code == missing.status_code == 404 and other.text == missing.text
    assert client.get(path, params={"region": "S1"}).status_code == 200


def test_layers_need_a_leader(client, layered):
    assert client.get("/leader/layers/heat.geojson", params={"region": "S1"}).status_code in (302, 303, 401)
    login(client, "resp1")
    assert client.get("/leader/layers/heat.geojson", params={"region": "C1"}).status_code == 403


def _token(engine):
    from geodata.store import auth as store

    _, tok = store.create_token(engine, "leader", ["S1"])
    return {"Authorization": f"Bearer {tok}"}


def test_visits_in_30_days_equal_on_page_json_and_excel(client, layered):
    from openpyxl import load_workbook

    login(client, "leader1")
    page = client.get("/leader", params={"region": "S1"}).text
    shown = re.search(r'data-member="M1".*?data-key="visits_30d">([^<]*)<', page, re.DOTALL).group(1)
    body = client.get("/leader/members.json", params={"region": "S1"}).json()
    (m1,) = [m for m in body["members"] if m["member_id"] == "M1"]
    sheet = load_workbook(io.BytesIO(client.get("/leader/report.xlsx", params={"region": "S1"}).content))["党员"]
    headers = [c.value for c in sheet[6]]
    row = {h: c.value for h, c in zip(headers, sheet[7])}
    assert row["党员编号"] == "M1"
    assert int(shown) == m1["visits_30d"] == row["近30天走访"] == 2  # the visit 40 days ago does not count
    assert "<th>近30天走访</th>" in page
