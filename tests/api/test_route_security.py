"""Every route's role and region rules, and personal-data masking, end to end over HTTP.

A synthetic city with several streets (街道) is loaded; tokens are scoped to street A and the
requests aim at street B (403 expected) or at A (allowed, with personal data masked or shown and
audited as the role allows). Complements tests/test_auth.py (401 on every route without a token).
"""

from __future__ import annotations

import functools

import pytest
import sqlalchemy as sa

from api.auth import NOT_FOUND_DETAIL

from geodata.store import auth as store

pytestmark = pytest.mark.db


@functools.lru_cache(maxsize=1)
def _layers():
    from geodata.io import normalise
    from geodata.synth import synth_city

    c = synth_city(6000, seed=2, households_per_grid=50)
    return {layer: normalise(c[layer], layer) for layer in
            ("streets", "communities", "grids", "households", "members", "service_centres")}


@pytest.fixture()
def town(engine, db_url):
    """Street A and B codes, one community/grid/member of each, and an admin client (links computed in A and B)."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from geodata.store.importer import import_layer

    layers = _layers()
    for layer, gdf in layers.items():
        import_layer(engine, layer, gdf)
    comm, grids, members = layers["communities"], layers["grids"], layers["members"]
    streets = comm["street_code"].astype(str).unique().tolist()
    a, b = streets[0], streets[1]

    def pick(street):
        cc = comm.loc[comm["street_code"] == street, "code"].astype(str).tolist()
        gg = grids.loc[grids["community_code"].isin(cc)]
        # a grid with at least 2 members, so links exist
        counts = members.groupby("grid_code").size()
        g = next(code for code in gg["grid_code"].astype(str) if counts.get(code, 0) >= 2)
        m = str(members.loc[members["grid_code"] == g, "member_id"].iloc[0])
        poly = gg.loc[gg["grid_code"] == g].geometry.iloc[0]
        pt = poly.representative_point()
        return {"street": street, "community": str(gg.loc[gg["grid_code"] == g, "community_code"].iloc[0]),
                "grid": g, "member": m, "lon": pt.x, "lat": pt.y}

    def cell_of(grid):
        from gridmap.cells import to_unsigned

        with engine.connect() as conn:
            h = conn.execute(sa.text("SELECT h3 FROM grid_cells WHERE grid_code = :g ORDER BY h3 LIMIT 1"),
                             {"g": grid}).scalar()
        return format(int(to_unsigned([h])[0]), "x")

    client = TestClient(create_app(db_url), raise_server_exceptions=False)
    _, admin = store.create_token(engine, "admin", ["*"])
    client.headers["Authorization"] = f"Bearer {admin}"
    A, B = pick(a), pick(b)
    for side in (A, B):
        side["cell"] = cell_of(side["grid"])
        sibling = grids.loc[(grids["community_code"] == side["community"]) & (grids["grid_code"] != side["grid"]),
                            "grid_code"].astype(str).iloc[0]
        side["sibling"], side["sibling_cell"] = sibling, cell_of(sibling)
    for side in (A, B):
        r = client.post("/links/recompute", json={"region": side["grid"], "min_links": 0})
        assert r.status_code == 200, r.text
    return {"A": A, "B": B, "client": client, "engine": engine}


def _h(engine, role, regions, member=None):
    _, tok = store.create_token(engine, role, regions, member_id=member)
    return {"Authorization": f"Bearer {tok}"}


def _audit_ids(engine) -> list[list[str]]:
    with engine.connect() as c:
        return [list(r[0]) for r in c.execute(sa.text("SELECT ids FROM audit_log ORDER BY audit_id"))]


def test_region_a_token_cannot_reach_region_b(town):
    A, B, c, eng = town["A"], town["B"], town["client"], town["engine"]
    leader = _h(eng, "leader", [A["street"]])
    dispatcher = _h(eng, "dispatcher", [A["street"]])
    planner = _h(eng, "planner", [A["street"]])
    denied = [
        ("GET", "/coverage", {"params": {"region": B["community"]}}, leader),
        ("GET", "/gaps", {"params": {"region": B["street"]}}, leader),
        ("GET", "/maps/coverage", {"params": {"region": B["community"], "tiles": "none"}}, leader),
        ("GET", "/maps/links", {"params": {"region": A["street"], "grid": B["grid"], "tiles": "none"}}, leader),
        ("GET", "/incidents", {"params": {"region": B["street"]}}, dispatcher),
        ("GET", f"/members/{B['member']}/households", {}, leader),
        ("POST", "/links/recompute", {"json": {"region": B["grid"]}}, leader),
        ("POST", "/grids/preview", {"json": {"to_grid": B["grid"], "cells": [B["cell"]]}}, planner),
        ("POST", "/grids/commit", {"json": {"to_grid": B["grid"], "cells": [B["cell"]]}}, planner),
        ("GET", "/me/households", {"params": {"member_id": B["member"]}}, dispatcher),
        ("GET", "/me/incidents", {"params": {"member_id": B["member"]}}, dispatcher),
        ("POST", "/incidents", {"json": {"lon": B["lon"], "lat": B["lat"], "category": "环境卫生"}}, dispatcher),
    ]
    for method, path, kw, hdr in denied:
        r = c.request(method, path, headers=hdr, **kw)
        # "not yours" is the same 404, with the same words, as "missing" (issue 11): nothing about region B leaks
        assert (r.status_code, r.json()["detail"]) == (404, NOT_FOUND_DETAIL), (method, path, r.status_code, r.text[:300])
    missing = {"community": "NOPE-C", "street": "NOPE-S", "grid": "NOPE-G", "member": "NOPE-M"}
    for method, path, kw, hdr in denied[:7]:
        for key, code in missing.items():
            path, kw = path.replace(B[key], code), {k: _swap(v, B[key], code) for k, v in kw.items()}
        r = c.request(method, path, headers=hdr, **kw)
        assert (r.status_code, r.json()["detail"]) == (404, NOT_FOUND_DETAIL), (method, path, r.status_code, r.text[:300])


def _swap(value, old, new):
    if isinstance(value, dict):
        return {k: _swap(v, old, new) for k, v in value.items()}
    return new if value == old else value


def test_incident_in_b_is_hidden_from_a(town):
    A, B, c, eng = town["A"], town["B"], town["client"], town["engine"]
    r = c.post("/incidents", json={"lon": B["lon"], "lat": B["lat"], "category": "环境卫生"})
    assert r.status_code == 201, r.text
    iid = r.json()["incident_id"]
    dispatcher = _h(eng, "dispatcher", [A["street"]])
    # issue 11: "not yours" is the same 404 as "missing" (it was 403, which confirmed the incident exists)
    assert c.get(f"/incidents/{iid}", headers=dispatcher).status_code == 404
    assert c.post(f"/incidents/{iid}/assign", json={}, headers=dispatcher).status_code == 404
    listed = c.get("/incidents", headers=dispatcher).json()
    assert iid not in {i["incident_id"] for i in listed}
    mine = c.get("/incidents", headers=_h(eng, "dispatcher", [B["street"]])).json()
    assert iid in {i["incident_id"] for i in mine}


def test_nearest_responders_stay_in_the_token_region(town):
    A, B, c, eng = town["A"], town["B"], town["client"], town["engine"]
    dispatcher = _h(eng, "dispatcher", [A["community"]])
    r = c.get("/responders/nearest", params={"lon": B["lon"], "lat": B["lat"], "k": 20}, headers=dispatcher)
    assert r.status_code == 200, r.text
    with eng.connect() as conn:
        in_a = set(conn.execute(sa.text("SELECT grid_code FROM grids WHERE community_code = :c"),
                                {"c": A["community"]}).scalars())
    assert r.json() and {x["grid_code"] for x in r.json()} <= in_a
    everyone = c.get("/responders/nearest", params={"lon": B["lon"], "lat": B["lat"], "k": 20}).json()
    assert {x["grid_code"] for x in everyone} - in_a  # the admin sees members outside A


def test_grid_edit_cannot_take_households_from_a_grid_outside_the_token(town):
    """A planner of one grid may not move cells of the neighbouring grid (same community) into it."""
    A, c, eng = town["A"], town["client"], town["engine"]
    body = {"to_grid": A["grid"], "cells": [A["sibling_cell"]]}
    before = c.get("/coverage", params={"region": A["community"]}).json()["grids"]
    narrow = _h(eng, "planner", [A["grid"]])
    assert c.post("/grids/preview", json=body, headers=narrow).status_code == 403
    assert c.post("/grids/commit", json=body, headers=narrow).status_code == 403
    assert c.get("/coverage", params={"region": A["community"]}).json()["grids"] == before
    wide = _h(eng, "planner", [A["community"]])
    r = c.post("/grids/preview", json=body, headers=wide)
    assert r.status_code == 200, r.text
    assert {g["grid_code"] for g in r.json()["grids"]} >= {A["grid"], A["sibling"]}


@pytest.mark.parametrize("role, allowed", [
    ("viewer", {"/coverage"}),
    ("planner", {"/coverage", "/members", "/links/recompute", "/grids/preview"}),
    ("responder", {"/coverage", "/members"}),
])
def test_roles(town, role, allowed):
    A, c, eng = town["A"], town["client"], town["engine"]
    hdr = _h(eng, role, [A["street"]], member=A["member"] if role == "responder" else None)
    calls = {
        "/coverage": ("GET", "/coverage", {"params": {"region": A["community"]}}),
        "/members": ("GET", f"/members/{A['member']}/households", {}),
        "/links/recompute": ("POST", "/links/recompute", {"json": {"region": A["grid"], "min_links": 0}}),
        "/incidents": ("GET", "/incidents", {}),
        "/audit": ("GET", "/audit", {}),
        "/grids/preview": ("POST", "/grids/preview", {"json": {"to_grid": A["grid"], "cells": [A["cell"]]}}),
    }
    for key, (method, path, kw) in calls.items():
        r = c.request(method, path, headers=hdr, **kw)
        if key in allowed:
            assert r.status_code == 200, (role, path, r.status_code, r.text[:200])
        else:
            assert r.status_code == 403, (role, path, r.status_code, r.text[:200])


def test_personal_data_masked_or_shown_and_audited(town):
    A, c, eng = town["A"], town["client"], town["engine"]
    path = f"/members/{A['member']}/households"
    n_audit = len(_audit_ids(eng))

    planner = c.get(path, headers=_h(eng, "planner", [A["street"]])).json()
    assert planner and all(h["name"] is None or "*" in h["name"] for h in planner)
    assert all(h["phone"] is None or "****" in h["phone"] for h in planner)
    assert len(_audit_ids(eng)) == n_audit  # nothing read unmasked, nothing logged

    leader = c.get(path, headers=_h(eng, "leader", [A["community"]])).json()
    named = [h for h in leader if h["name"]]
    assert named and all("*" not in h["name"] for h in named)
    log = _audit_ids(eng)
    assert len(log) == n_audit + 1 and set(log[-1]) == {h["household_id"] for h in named}

    responder = _h(eng, "responder", [A["grid"]], member=A["member"])
    mine = c.get("/me/households", headers=responder).json()
    assert {h["household_id"] for h in mine} == {h["household_id"] for h in leader}
    assert all("*" not in (h["name"] or "") for h in mine)
    assert len(_audit_ids(eng)) == n_audit + 2
    # another member of the same grid cannot read this member's households
    with eng.connect() as conn:
        other = conn.execute(sa.text("SELECT member_id FROM members WHERE grid_code = :g AND member_id <> :m LIMIT 1"),
                             {"g": A["grid"], "m": A["member"]}).scalar()
    other_hdr = _h(eng, "responder", [A["grid"]], member=other)
    assert c.get(path, headers=other_hdr).status_code == 404  # not yours: the same 404 as missing
    assert c.get("/me/households", params={"member_id": A["member"]}, headers=other_hdr).status_code == 403
