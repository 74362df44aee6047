"""Tokens, roles, region scopes, personal-data masking and the audit log (api.auth, geodata.store.auth)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi import Depends
from fastapi.testclient import TestClient

from api.auth import Principal, current_principal, present_pii, record_pii_read, require_roles
from geodata.store import auth as store

pytestmark = pytest.mark.db

SQUARE = "ST_Multi(ST_GeomFromText('POLYGON((120.1 30.2,120.2 30.2,120.2 30.3,120.1 30.3,120.1 30.2))',4326))"


def _regions(engine):
    """Two streets S1, S2; communities C11, C12 in S1 and C21 in S2; grids G111, G112 in C11, G121 in C12,
    G211 in C21."""
    with engine.begin() as c:
        for s in ("S1", "S2"):
            c.execute(sa.text(f"INSERT INTO streets (code, name, geom) VALUES (:c, :c, {SQUARE})"), {"c": s})
        for code, street in (("C11", "S1"), ("C12", "S1"), ("C21", "S2")):
            c.execute(sa.text(f"INSERT INTO communities (code, street_code, geom) VALUES (:c, :s, {SQUARE})"),
                      {"c": code, "s": street})
        for g, comm in (("G111", "C11"), ("G112", "C11"), ("G121", "C12"), ("G211", "C21")):
            c.execute(sa.text(f"INSERT INTO grids (grid_code, community_code, geom) VALUES (:g, :c, {SQUARE})"),
                      {"g": g, "c": comm})


@pytest.fixture()
def regions(engine):
    _regions(engine)
    return engine


@pytest.fixture()
def client(db_url, engine):
    from api.app import create_app

    return TestClient(create_app(db_url))


def _token(engine, role="admin", regions=("*",), member=None):
    rec, tok = store.create_token(engine, role, list(regions), member_id=member)
    return rec, {"Authorization": f"Bearer {tok}"}


# --- tokens in the store -----------------------------------------------------------------------

def test_token_is_stored_hashed_and_found(engine):
    rec, tok = store.create_token(engine, "leader", ["S1"], label="书记")
    assert tok.startswith("gm_") and len(tok) == 3 + 43
    with engine.connect() as c:
        stored = c.execute(sa.text("SELECT token_hash FROM api_tokens WHERE token_id = :i"), {"i": rec.token_id}).scalar()
    assert stored == store.hash_token(tok) and tok not in stored
    found = store.find_token(engine, tok)
    assert found.token_id == rec.token_id and found.role == "leader" and found.regions == ("S1",)
    assert store.find_token(engine, tok + "x") is None
    assert store.revoke_token(engine, rec.token_id)
    assert store.find_token(engine, tok) is None
    assert not store.revoke_token(engine, rec.token_id)  # already revoked


def test_two_tokens_differ(engine):
    assert store.create_token(engine, "admin", ["*"])[1] != store.create_token(engine, "admin", ["*"])[1]


@pytest.mark.parametrize("role, regions, member, msg", [
    ("boss", ["S1"], None, "unknown role"),
    ("leader", [], None, "at least one region"),
    ("leader", ["  "], None, "at least one region"),
    ("responder", ["G111"], None, "--member"),
])
def test_create_token_refuses(engine, role, regions, member, msg):
    with pytest.raises(ValueError, match=msg):
        store.create_token(engine, role, regions, member_id=member)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM api_tokens")).scalar() == 0


def test_database_refuses_a_bad_role(engine):
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO api_tokens (token_hash, role, regions) VALUES (:h, 'root', '{*}')"),
                      {"h": "0" * 64})


# --- region scope --------------------------------------------------------------------------------

def _p(engine, regions, role="leader"):
    return Principal(1, role, list(regions), engine=engine)


def test_street_covers_its_communities_and_grids(regions):
    p = _p(regions, ["S1"])
    assert p.covers(street_code="S1")
    assert p.covers(community_code="C11") and p.covers(community_code="C12")
    assert p.covers(grid_code="G111") and p.covers(grid_code="G121")
    assert not p.covers(grid_code="G211") and not p.covers(community_code="C21") and not p.covers(street_code="S2")
    assert p.grid_codes() == frozenset({"S1", "G111", "G112", "G121"})
    assert p.covers_code("C12") and not p.covers_code("G211")


def test_community_covers_its_grids_only(regions):
    p = _p(regions, ["C11"])
    assert p.covers(grid_code="G111") and p.covers(grid_code="G112")
    assert not p.covers(grid_code="G121")
    assert not p.covers(street_code="S1")  # a community token does not see its whole street
    # an object is covered when any of its codes is: an incident in G111 / C11 / S1
    assert p.covers(grid_code="G111", community_code="C11", street_code="S1")


def test_grid_covers_itself_only(regions):
    p = _p(regions, ["G112"])
    assert p.covers(grid_code="G112")
    assert not p.covers(grid_code="G111") and not p.covers(community_code="C11")
    assert not p.covers()  # nothing known about the object: only '*' covers it


def test_several_regions_and_everything(regions):
    p = _p(regions, ["G112", "C21"])
    assert p.covers(grid_code="G112") and p.covers(grid_code="G211") and not p.covers(grid_code="G111")
    star = _p(regions, ["*"])
    assert star.everywhere and star.covers() and star.covers(grid_code="anything") and star.grid_codes() is None


def test_unknown_code_covers_itself(regions):
    # a grid imported after the token was made is covered as soon as the import commits
    import geopandas as gpd
    from shapely.geometry import MultiPolygon, box

    from geodata.store.importer import import_layer

    p = _p(regions, ["C99"])
    assert not p.covers(grid_code="G991")
    g = gpd.GeoDataFrame({"grid_code": ["G991"], "community_code": ["C99"]},
                         geometry=[MultiPolygon([box(120.1, 30.2, 120.2, 30.3)])], crs="EPSG:4326")
    import_layer(regions, "grids", g)
    assert _p(regions, ["C99"]).covers(grid_code="G991")


def test_scope_cache_expires(regions, monkeypatch):
    # a grid written by other means (SQL, another process) is seen within CACHE_SECONDS
    p = _p(regions, ["C98"])
    assert not p.covers(grid_code="G981")
    with regions.begin() as c:
        c.execute(sa.text(f"INSERT INTO grids (grid_code, community_code, geom) VALUES ('G981', 'C98', {SQUARE})"))
    assert not _p(regions, ["C98"]).covers(grid_code="G981")  # still the cached expansion
    monkeypatch.setattr(store, "CACHE_SECONDS", 0.0)
    assert _p(regions, ["C98"]).covers(grid_code="G981")


def test_allows_pii_needs_role_and_region(regions):
    assert _p(regions, ["S1"], "leader").allows_pii(grid_code="G111")
    assert not _p(regions, ["S1"], "leader").allows_pii(grid_code="G211")
    assert not _p(regions, ["*"], "planner").allows_pii(grid_code="G111")
    assert not _p(regions, ["*"], "viewer").allows_pii(grid_code="G111")
    assert _p(regions, ["C11"], "dispatcher").allows_pii(grid_code="G112")


def test_region_kind_and_parents(regions):
    assert store.region_kind(regions, "S1") == "street"
    assert store.region_kind(regions, "C12") == "community"
    assert store.region_kind(regions, "G211") == "grid"
    assert store.region_kind(regions, "nope") is None
    assert store.region_parents(regions, grid_code="G121") == {"grid_code": "G121", "community_code": "C12",
                                                               "street_code": "S1"}


def test_require_roles_rejects_unknown_roles():
    with pytest.raises(ValueError):
        require_roles("superuser")


# --- HTTP ---------------------------------------------------------------------------------------

def test_health_is_public(client):
    assert client.get("/health").status_code == 200


def test_audit_needs_an_admin_token(client, engine):
    assert client.get("/audit").status_code == 401
    r = client.get("/audit", headers={"Authorization": "Bearer gm_nottherealtoken"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/audit", headers={"Authorization": "Basic dXNlcjpwdw=="}).status_code == 401
    _, leader = _token(engine, "leader", ["S1"])
    r = client.get("/audit", headers=leader)
    assert r.status_code == 403 and "role leader" in r.json()["detail"]
    rec, admin = _token(engine)
    assert client.get("/audit", headers=admin).status_code == 200
    store.revoke_token(engine, rec.token_id)
    assert client.get("/audit", headers=admin).status_code == 401


#: What may answer without a token or login (each a decision of an issue): health, Open311 reads (issue 17,
#: by the spec), the residents' report pages and the public 先锋地图 (issue 17), the login page.
PUBLIC_PREFIXES = ("/health", "/open311/", "/report", "/pioneers", "/login", "/docs", "/openapi.json")


def test_every_route_but_health_needs_a_token(client):
    """Whatever routers are registered, each operation in the OpenAPI spec answers 401 without a token,
    unless its endpoint is marked public, and only the paths above may be marked public."""
    import re

    from fastapi.routing import APIRoute

    from api.auth import _PUBLIC_ATTR

    def api_routes(routes):
        for r in routes:
            if isinstance(r, APIRoute):
                yield r
            inner = getattr(r, "original_router", None) or getattr(r, "router", None)  # included routers
            if inner is not None and inner is not r:
                yield from api_routes(getattr(inner, "routes", []))

    public = {r.path for r in api_routes(client.app.routes)  # JSON routes; pages check their login themselves
              if r.include_in_schema and getattr(r.endpoint, _PUBLIC_ATTR, False)}
    assert public and all(p.startswith(PUBLIC_PREFIXES) for p in public), sorted(public)
    checked = 0
    for path, ops in client.app.openapi()["paths"].items():
        if path in public:
            continue
        url = re.sub(r"\{[^}]+\}", "1", path)
        for method in ops:
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            r = client.request(method.upper(), url)
            assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
            checked += 1
    assert checked >= 1


def test_pii_reads_are_audited_and_listed(client, regions):
    admin_rec, admin = _token(regions)
    leader = _p(regions, ["S1"], "leader")
    leader.token_id = store.create_token(regions, "leader", ["S1"])[0].token_id
    rows = [
        {"household_id": "H1", "grid_code": "G111", "name": "张三", "phone": "13812341234", "id_number": "110101199001011234"},
        {"household_id": "H2", "grid_code": "G211", "name": "李四", "phone": "13912345678", "id_number": None},
        {"household_id": "H3", "grid_code": "G112", "name": None, "phone": None, "id_number": None},
    ]
    out = present_pii(regions, leader, "households", rows, "household_id")
    assert out[0]["name"] == "张三" and out[0]["id_number"] == "110101199001011234"  # in region: plain
    assert out[1]["name"] == "李*" and out[1]["phone"] == "139****5678"           # outside: masked
    assert record_pii_read(regions, leader, "households", []) is None                 # nothing read, nothing logged

    entries = client.get("/audit", headers=admin).json()
    assert len(entries) == 1
    e = entries[0]
    # H3 had no personal data, H2 was masked: only H1 was read unmasked
    assert e["ids"] == ["H1"] and e["n_ids"] == 1 and e["what"] == "households" and e["action"] == "pii_read"
    assert e["token_id"] == leader.token_id and e["role"] == "leader"
    assert "张三" not in str(entries) and "13812341234" not in str(entries)
    assert client.get("/audit", params={"record_id": "H1"}, headers=admin).json()[0]["audit_id"] == e["audit_id"]
    assert client.get("/audit", params={"record_id": "H2"}, headers=admin).json() == []
    assert client.get("/audit", params={"token_id": admin_rec.token_id}, headers=admin).json() == []
    assert client.get("/audit", params={"limit": 0}, headers=admin).status_code == 422


def test_responder_sees_only_own_households_unmasked(regions):
    rec, _ = store.create_token(regions, "responder", ["G111"], member_id="M1")
    p = Principal(rec.token_id, "responder", ["G111"], "M1", engine=regions)
    rows = [{"household_id": "H1", "grid_code": "G111", "name": "张三", "phone": "13812341234"},
            {"household_id": "H9", "grid_code": "G111", "name": "王五", "phone": "13712341234"}]
    out = present_pii(regions, p, "households", rows, "household_id", own_ids={"H1"})
    assert out[0]["name"] == "张三" and out[1]["name"] == "王*"


def test_route_dependencies_resolve_once(db_url, engine, regions):
    """A route using current_principal/require_roles next to the app-wide gate: one lookup, same principal."""
    from api.app import create_app

    app = create_app(db_url)
    calls = []
    orig = store.find_token

    def counting(engine, token):
        calls.append(token)
        return orig(engine, token)

    @app.get("/_probe")
    def probe(p: Principal = Depends(current_principal), q: Principal = Depends(require_roles("leader"))):
        p.require(grid_code="G111")
        return {"same": p is q, "role": p.role}

    client = TestClient(app)
    store.find_token = counting
    try:
        _, leader = _token(regions, "leader", ["C11"])
        assert client.get("/_probe", headers=leader).json() == {"same": True, "role": "leader"}
        assert len(calls) == 1
        _, other = _token(regions, "leader", ["C21"])
        r = client.get("/_probe", headers=other)
        assert r.status_code == 404 and "outside your regions" in r.json()["detail"]  # same as missing
        _, planner = _token(regions, "planner", ["*"])
        assert client.get("/_probe", headers=planner).status_code == 403
    finally:
        store.find_token = orig


def test_api_answers_503_when_token_lookup_cannot_reach_the_database():
    from api.app import create_app

    app = create_app("postgresql+psycopg://postgres@127.0.0.1:1/none")  # nothing listens on port 1
    r = TestClient(app).get("/audit", headers={"Authorization": "Bearer gm_x"})
    assert r.status_code == 503 and r.headers["retry-after"]


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_token_create_use_revoke(db_url, engine, monkeypatch):
    from typer.testing import CliRunner

    from api.app import create_app
    from api.cli import app as cli

    monkeypatch.setenv("GRIDMAP_DATABASE_URL", db_url)
    runner = CliRunner()
    res = runner.invoke(cli, ["token", "create", "--role", "admin"])
    assert res.exit_code == 0, res.output
    token = [ln for ln in res.output.splitlines() if ln.startswith("gm_")][0]
    token_id = int(res.output.split("token id ")[1].split(":")[0])
    client = TestClient(create_app(db_url))
    hdr = {"Authorization": f"Bearer {token}"}
    assert client.get("/audit", headers=hdr).status_code == 200
    listed = runner.invoke(cli, ["token", "list"])
    assert listed.exit_code == 0 and token not in listed.output and f"{token_id}\tadmin" in listed.output

    res = runner.invoke(cli, ["token", "create", "--role", "responder", "--region", "G111"])
    assert res.exit_code != 0 and "--member" in res.output
    res = runner.invoke(cli, ["token", "create", "--role", "leader"])
    assert res.exit_code != 0 and "--region" in res.output
    res = runner.invoke(cli, ["token", "create", "--role", "responder", "--region", "G111", "--region", "G112",
                              "--member", "M7"])
    assert res.exit_code == 0 and "regions G111, G112, member M7" in res.output

    assert runner.invoke(cli, ["token", "revoke", str(token_id)]).exit_code == 0
    assert client.get("/audit", headers=hdr).status_code == 401
    res = runner.invoke(cli, ["token", "revoke", str(token_id)])
    assert res.exit_code != 0 and "no live token" in res.output
