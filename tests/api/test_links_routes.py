"""包片联户 over HTTP: recompute and a member's households."""

from __future__ import annotations

import pytest

from linkage_cases import _store_region


@pytest.mark.db
def test_api_recompute_and_member_households(db_url, engine):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from geodata.store import auth

    households, members, grids = _store_region(engine, seed=9)
    client = TestClient(create_app(db_url))

    def hdr(role, regions, member=None):
        return {"Authorization": f"Bearer {auth.create_token(engine, role, list(regions), member_id=member)[1]}"}

    leader = hdr("leader", ["S1"])
    assert client.post("/links/recompute", json={"region": "C1"}, headers=hdr("viewer", ["S1"])).status_code == 403
    # outside the token: the same 404 as a missing region
    assert client.post("/links/recompute", json={"region": "C1"}, headers=hdr("leader", ["G0"])).status_code == 404
    r = client.post("/links/recompute", json={"region": "C1"}, headers=leader)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["summary"]["linked"] + body["summary"]["unlinked"] == len(households)
    assert sum(s["unlinked"] for s in body["shortages"]) == body["summary"]["unlinked"]
    assert "住户" not in r.text  # no personal data in the run summary
    assert client.post("/links/recompute", json={"region": "NOPE"}, headers=hdr("admin", ["*"])).status_code == 404

    member = members["member_id"].iloc[0]
    grid = members["grid_code"].iloc[0]
    other = members[members["grid_code"] != grid]["member_id"].iloc[0]
    me = hdr("responder", [grid], member=member)
    own = client.get(f"/members/{member}/households", headers=me)
    assert own.status_code == 200, own.text
    rows = own.json()
    assert [x["visit_order"] for x in rows] == list(range(1, len(rows) + 1))
    assert rows and all(x["name"].startswith("住户") and "*" not in x["name"] for x in rows)  # own: unmasked
    assert client.get(f"/members/{other}/households", headers=me).status_code == 404
    planner = client.get(f"/members/{member}/households", headers=hdr("planner", ["S1"])).json()
    assert [x["household_id"] for x in planner] == [x["household_id"] for x in rows]
    assert all("*" in x["name"] for x in planner)  # planners never see personal data
    assert client.get(f"/members/{member}/households", headers=hdr("leader", ["G9"])).status_code == 404
    assert client.get("/members/nobody/households", headers=leader).status_code == 404
