"""The HTTP hot paths (issue 19) against a real PostGIS: the async store gives the sync store's rows, the
routes answer as before, no thread-pool hop on the way, dead pooled connections cost no 503, the database
down is a 503 and a value PostgreSQL refuses a 422, refusals change no table."""

from __future__ import annotations

import asyncio
import socket

import anyio.to_thread
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from conftest import create_database, drop_database
from dispatch_cases import LAT0, LON0, insert_members, random_members

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def town():
    """Its own database: a small synthetic city (regions, households, members), every grid linked,
    plus 3,000 random responders around (LON0, LAT0) with ties; tokens."""
    from geodata.io import normalise
    from geodata.store import auth, migrate
    from geodata.store.importer import import_layer
    from geodata.store.links import recompute
    from geodata.store.session import make_engine
    from geodata.synth import synth_city

    url = create_database("gridmap_hot")
    migrate.upgrade(url)
    eng = make_engine(url)
    city = synth_city(1200, seed=7)
    for layer in ("streets", "communities", "grids", "households", "members"):
        import_layer(eng, layer, normalise(city[layer], layer))
    for street in city["streets"]["code"]:
        recompute(eng, str(street))
    ids, lon, lat, skills, avail = random_members(3000, seed=11)
    insert_members(eng, ids, lon, lat, skills, avail, grid_codes=[str(city["grids"]["grid_code"].iloc[i % 3])
                                                                  for i in range(len(ids))])
    with eng.connect() as c:
        member, grid = c.execute(sa.text(
            "SELECT l.member_id, m.grid_code FROM links l JOIN link_runs r ON r.run_id = l.run_id AND r.is_current "
            "JOIN members m ON m.member_id = l.member_id GROUP BY 1, 2 ORDER BY count(*) DESC, 1 LIMIT 1")).one()
    street = str(city["streets"]["code"].iloc[0])

    def hdr(role, regions=("*",), member_id=None):
        return {"Authorization": f"Bearer {auth.create_token(eng, role, list(regions), member_id=member_id)[1]}"}

    yield {"url": url, "engine": eng, "member": member, "grid": grid, "street": street, "hdr": hdr,
           "grids": [str(g) for g in city["grids"]["grid_code"]]}
    eng.dispose()
    drop_database(url)


def _counts(eng) -> dict:
    with eng.connect() as c:
        return {t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("audit_log", "members", "households", "links", "api_tokens")}


# -- the async store gives the sync store's answers -------------------------------------------------------

def test_async_nearest_equals_the_sync_store(town):
    import orjson

    from geodata.store import pool as hot
    from geodata.store.nearest import nearest_responders

    reader = hot.Reader(town["url"], str(town["engine"].url))
    rng = np.random.default_rng(3)
    skills, radii, pools = (None, "法律", "医疗"), (None, 300.0, 2000.0), (None, town["grids"][:2])
    cases = [dict(k=int(rng.integers(1, 30)), skill=skills[rng.integers(3)], radius_m=radii[rng.integers(3)],
                  pool=pools[rng.integers(2)]) for _ in range(25)]
    # a point with many responders at the very same spot: more ties at the k-th place than TIE_MARGIN
    with town["engine"].begin() as c:
        c.execute(sa.text("INSERT INTO members (member_id, kind, available, skills, h3, geom) "
                          "SELECT 'TIE' || lpad(i::text, 3, '0'), 'member', true, '{}', 0, "
                          "ST_SetSRID(ST_MakePoint(120.3, 30.4), 4326) FROM generate_series(1, 20) i"))
    points = [(LON0 + rng.uniform(-0.04, 0.04), LAT0 + rng.uniform(-0.04, 0.04)) for _ in cases]
    points[-1] = (120.3, 30.4)
    cases[-1] = dict(k=5, skill=None, radius_m=None, pool=None)
    try:
        for (lon, lat), case in zip(points, cases):
            with town["engine"].connect() as conn:
                want = nearest_responders(conn, lon, lat, **case)
            fields = ("member_id", "kind", "grid_code", "skills", "lon", "lat", "distance_m")
            got = orjson.loads(asyncio.run(hot.nearest_responders_json(reader, lon, lat, fields, **case)))
            assert got == [{f: w[f] for f in fields} for w in want], case
        assert [r["member_id"] for r in got] == [f"TIE{i:03d}" for i in range(1, 6)]
    finally:
        with town["engine"].begin() as c:
            c.execute(sa.text("DELETE FROM members WHERE member_id LIKE 'TIE%'"))


def test_json_written_by_postgresql_equals_the_store_rows(town):
    """The route's JSON (written in the query) holds the store's responders, order and float values
    exactly, for every statement variant, an empty answer and more ties than the one scan fetches."""
    import orjson

    from geodata.store import pool as hot
    from geodata.store.nearest import nearest_responders

    fields = ("member_id", "kind", "grid_code", "skills", "lon", "lat", "distance_m")
    reader = hot.Reader(town["url"], str(town["engine"].url))
    rng = np.random.default_rng(8)
    cases = [dict(k=int(rng.integers(1, 40)), skill=(None, "法律", "医疗", "无此技能")[rng.integers(4)],
                  radius_m=(None, 150.0, 2000.0)[rng.integers(3)], pool=(None, town["grids"][:2])[rng.integers(2)])
             for _ in range(30)]
    points = [(LON0 + rng.uniform(-0.04, 0.04), LAT0 + rng.uniform(-0.04, 0.04)) for _ in cases]
    with town["engine"].begin() as c:
        c.execute(sa.text("INSERT INTO members (member_id, kind, available, skills, h3, geom) "
                          "SELECT 'TIE' || lpad(i::text, 3, '0'), 'member', true, '{}', 0, "
                          "ST_SetSRID(ST_MakePoint(120.3, 30.4), 4326) FROM generate_series(1, 20) i"))
    points.append((120.3, 30.4))
    cases.append(dict(k=5, skill=None, radius_m=None, pool=None))
    try:
        empty = 0
        for (lon, lat), case in zip(points, cases):
            with town["engine"].connect() as conn:
                want = [{f: w[f] for f in fields} for w in nearest_responders(conn, lon, lat, **case)]
            body = asyncio.run(hot.nearest_responders_json(reader, lon, lat, fields, **case))
            assert orjson.loads(body) == want, case
            assert list(orjson.loads(body)[0]) == list(fields) if want else body == b"[]"
            empty += not want
        assert empty and [r["member_id"] for r in want] == [f"TIE{i:03d}" for i in range(1, 6)]
    finally:
        with town["engine"].begin() as c:
            c.execute(sa.text("DELETE FROM members WHERE member_id LIKE 'TIE%'"))


def test_async_households_and_regions_equal_the_sync_store_and_share_its_cache(town):
    from geodata.store import auth
    from geodata.store import pool as hot
    from geodata.store.links import member_households

    eng = town["engine"]
    reader = hot.Reader(town["url"], str(eng.url))
    rows = asyncio.run(hot.member_households(reader, town["member"]))
    assert rows and rows == member_households(eng, town["member"])

    auth.clear_cache()
    scope = asyncio.run(hot.expand_regions(reader, [town["street"]]))
    assert town["grid"] in scope.grids or scope.grids
    key = ("regions", str(eng.url), frozenset([town["street"]]))
    assert auth._cached(key, lambda: None) is scope  # the sync look-up now finds it without the database
    auth.clear_cache()
    assert auth.expand_regions(eng, [town["street"]]) == scope


# -- the routes answer as before --------------------------------------------------------------------------

def test_nearest_route_over_the_pool_answers_like_the_store(town):
    from api.app import create_app
    from geodata.store.nearest import nearest_responders

    hdr = town["hdr"]("dispatcher")
    with TestClient(create_app(town["url"])) as client:  # the lifespan opens the pool
        assert client.app.state.hot_reader.pool is not None
        for lon, lat, k in ((LON0, LAT0, 5), (LON0 + 0.01, LAT0 - 0.01, 12)):
            r = client.get("/responders/nearest", params={"lon": lon, "lat": lat, "k": k}, headers=hdr)
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            with town["engine"].connect() as conn:
                want = nearest_responders(conn, lon, lat, k=k)
            fields = ("member_id", "kind", "grid_code", "skills", "lon", "lat", "distance_m")
            assert r.json() == [{f: w[f] for f in fields} for w in want]
            assert r.headers["cache-control"] == "no-store"
    assert client.app.state.hot_reader.pool is None  # closed with the app


def test_regional_token_sees_only_its_grids_over_the_pool(town):
    from api.app import create_app

    grid = town["grids"][1]
    with TestClient(create_app(town["url"])) as client:
        rows = client.get("/responders/nearest", params={"lon": LON0, "lat": LAT0, "k": 30},
                          headers=town["hdr"]("dispatcher", [grid])).json()
    assert rows and {r["grid_code"] for r in rows} == {grid}


def test_my_households_over_the_pool_unmasked_for_the_member_and_audited(town):
    from api.app import create_app
    from api.auth import Principal, present_pii
    from api.routes.dispatch import Household
    from geodata.store.links import member_households
    from gridmap.privacy import mask_id_number

    eng = town["engine"]
    hdr = town["hdr"]("responder", [town["grid"]], member_id=town["member"])
    before = _counts(eng)
    with TestClient(create_app(town["url"])) as client:
        got = client.get("/me/households", headers=hdr).json()
    rows = member_households(eng, town["member"])
    p = Principal(0, "responder", [town["grid"]], town["member"], engine=eng)
    shown = present_pii(eng, p, "households", rows, "household_id", own_ids={r["household_id"] for r in rows})
    # a responder sees name and phone of their own households, never the 身份证号 (issue 15)
    want = [Household(**{**r, "id_number": mask_id_number(r["id_number"])}).model_dump(mode="json") for r in shown]
    assert got == want and all(h["name"] and "*" not in h["name"] for h in got if h["name"])
    assert all("*" in h["id_number"] for h in got if h["id_number"])
    after = _counts(eng)
    assert after["audit_log"] == before["audit_log"] + 2  # one entry by the route, one by present_pii above
    with eng.connect() as c:
        entry = c.execute(sa.text("SELECT role, member_id, action, what, ids FROM audit_log "
                                  "ORDER BY audit_id DESC OFFSET 1 LIMIT 1")).one()
    assert entry[:4] == ("responder", town["member"], "pii_read", "households")
    assert sorted(entry[4]) == sorted(h["household_id"] for h in got)


def test_refused_hot_reads_change_no_table(town):
    from api.app import create_app

    eng = town["engine"]
    with eng.connect() as c:
        other = c.execute(sa.text("SELECT member_id FROM members WHERE member_id <> :m AND grid_code IS NOT NULL "
                                  "LIMIT 1"), {"m": town["member"]}).scalar()
    responder = town["hdr"]("responder", [town["grid"]], member_id=other)
    planner, viewer = town["hdr"]("planner"), town["hdr"]("viewer")
    before = _counts(eng)
    with TestClient(create_app(town["url"])) as client:
        assert client.get("/me/households", params={"member_id": town["member"]}, headers=responder).status_code == 403
        assert client.get("/responders/nearest", params={"lon": LON0, "lat": LAT0}, headers=planner).status_code == 403
        assert client.get("/responders/nearest", params={"lon": LON0, "lat": LAT0}).status_code == 401
        assert client.get("/me/households", headers={"Authorization": "Bearer gm_nope"}).status_code == 401
        assert client.get("/me/households", headers=viewer).status_code == 403  # no member
    assert _counts(eng) == before


# -- no thread-pool hop; recovery; failures ---------------------------------------------------------------

@pytest.fixture()
def hops(monkeypatch):
    """Count every call into the thread pool (starlette's run_in_threadpool, sync dependencies and
    routes, and the request gate all go through ``anyio.to_thread.run_sync``)."""
    calls = []
    real = anyio.to_thread.run_sync

    async def counting(func, *args, **kwargs):
        func_ = getattr(func, "func", func)  # run_in_threadpool hands on a functools.partial
        calls.append(getattr(func_, "__name__", repr(func_)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return calls


def test_hot_reads_make_no_thread_pool_hop_once_the_token_is_cached(town, hops):
    from api.app import create_app

    disp = town["hdr"]("dispatcher")
    resp = town["hdr"]("responder", [town["grid"]], member_id=town["member"])
    with TestClient(create_app(town["url"])) as client:
        for h in (disp, resp):  # first use: the token is looked up (and cached)
            assert client.get("/health", headers=h).status_code == 200
        hops.clear()
        assert client.get("/health").status_code == 200
        assert client.get("/responders/nearest", params={"lon": LON0, "lat": LAT0}, headers=disp).status_code == 200
        assert client.get("/me/households", headers=resp).status_code == 200
        assert hops == []
        z, x, y = 14, 13660, 6739
        client.get(f"/tiles/grids/{z}/{x}/{y}.mvt", headers=disp)
        assert hops == ["render_tile"]  # the tile's render only


def test_dead_pooled_connections_cost_no_503(town):
    """Terminated sessions (a PostgreSQL restart, a DBA's kill): the pool drops them and the read is repeated."""
    from api.app import create_app

    hdr = town["hdr"]("dispatcher")
    q = {"lon": LON0, "lat": LAT0}
    with TestClient(create_app(town["url"])) as client:
        for _ in range(3):
            assert client.get("/responders/nearest", params=q, headers=hdr).status_code == 200
        with town["engine"].begin() as c:
            c.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        codes = [client.get(path, params=q, headers=hdr).status_code
                 for path in ("/responders/nearest", "/health", "/responders/nearest")]
    assert codes == [200, 200, 200]


def test_hot_path_database_unreachable_is_503_and_health_degraded(town):
    from api.app import create_app
    from geodata.store import pool as hot

    hdr = town["hdr"]("dispatcher")
    app = create_app(town["url"])
    app.state.hot_reader = hot.Reader("postgresql://postgres@127.0.0.1:1/none", str(town["engine"].url))
    client = TestClient(app, raise_server_exceptions=False)
    r = client.get("/responders/nearest", params={"lon": LON0, "lat": LAT0}, headers=hdr)
    assert r.status_code == 503 and int(r.headers["retry-after"]) > 0 and "unavailable" in r.text
    h = client.get("/health")
    assert h.status_code == 503 and h.json() == {"status": "degraded", "database": "unreachable"}


def test_value_postgresql_refuses_is_422_on_the_hot_path(town):
    from api.app import create_app

    before = _counts(town["engine"])
    with TestClient(create_app(town["url"]), raise_server_exceptions=False) as client:
        r = client.get("/responders/nearest", params={"lon": LON0, "lat": LAT0, "skill": "法\x00律"},
                       headers=town["hdr"]("dispatcher"))
    assert r.status_code == 422 and r.json()["detail"].startswith("invalid value")
    assert "法" not in r.text  # the parameter itself is never echoed
    assert _counts(town["engine"])["audit_log"] == before["audit_log"]


def test_serve_passes_loop_and_parser_to_uvicorn(monkeypatch, town):
    import uvicorn
    from typer.testing import CliRunner

    from api.cli import app as cli

    seen = {}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])

    class FakeServer:  # records what the command would run, runs nothing
        def __init__(self, config):
            seen.update(loop=config.loop, http=config.http)

        def run(self, sockets):
            for s in sockets:
                s.close()

    monkeypatch.setattr(uvicorn, "Server", FakeServer)
    r = CliRunner().invoke(cli, ["serve", "--port", port, "--database-url", town["url"]])
    assert r.exit_code == 0, r.output
    assert seen == {"loop": "uvloop", "http": "httptools"}
    r = CliRunner().invoke(cli, ["serve", "--port", port, "--loop", "asyncio", "--http", "h11",
                                 "--database-url", town["url"]])
    assert r.exit_code == 0 and seen == {"loop": "asyncio", "http": "h11"}
    assert CliRunner().invoke(cli, ["serve", "--loop", "tornado"]).exit_code == 2


def test_hot_route_without_the_app_gate_still_checks_the_caller(town):
    """``caller`` falls back to resolving the token itself: a router mounted without the app-wide gate
    lets nobody through unchecked."""
    from fastapi import FastAPI

    from api.routes import nearest
    from geodata.store import pool as hot
    from geodata.store.session import make_engine

    app = FastAPI()
    app.state.engine = make_engine(town["url"])
    app.state.hot_reader = hot.Reader(town["url"], str(app.state.engine.url))
    app.include_router(nearest.router)
    client = TestClient(app)
    q = {"lon": LON0, "lat": LAT0}
    assert client.get("/responders/nearest", params=q).status_code == 401
    assert client.get("/responders/nearest", params=q, headers=town["hdr"]("planner")).status_code == 403
    assert client.get("/responders/nearest", params=q, headers=town["hdr"]("leader")).status_code == 200


# -- the route's own query parsing and its place in the route list (issue 19) -------------------------------

BAD_QUERIES = [{"lon": 200, "lat": 30}, {"lat": 30}, {}, {"lon": "abc", "lat": 30}, {"lon": 120, "lat": 30, "k": 0},
               {"lon": 120, "lat": 30, "k": 1.5}, {"lon": 120, "lat": 30, "k": 101}, {"lon": "nan", "lat": 30},
               {"lon": "inf", "lat": "-inf"}, {"lon": 120, "lat": 30, "radius_m": -5}, {"lon": 120, "lat": 30, "radius_m": ""},
               {"lon": 120, "lat": 30, "skill": "技" * 51}, {"lon": "9" * 3000, "lat": 30}, {"lon": 120, "lat": 95}]


def _declared_nearest_app(town):
    """The route as FastAPI would solve it from declared ``Query`` arguments (its shape before issue 19),
    with the service's own error handlers: the reference for the hand-parsed query string."""
    from fastapi import FastAPI, Query

    from api import guards
    from geodata.store.session import make_engine

    app = FastAPI()
    app.state.engine = make_engine(town["url"])
    guards.install(app)

    @app.get("/responders/nearest")
    async def nearest(lon: float = Query(..., ge=-180, le=180), lat: float = Query(..., ge=-90, le=90),
                      k: int = Query(5, ge=1, le=100), skill: str | None = Query(None, max_length=50),
                      radius_m: float | None = Query(None, gt=0, le=100_000)):
        return {"lon": lon, "lat": lat, "k": k, "skill": skill, "radius_m": radius_m}

    return app


def test_hand_parsed_query_gives_fastapis_422s_and_values(town):
    from api.app import create_app
    from urllib.parse import quote

    from starlette.requests import Request

    from api.hotpath import parse_query
    from api.routes.nearest import NearestQuery

    hdr = town["hdr"]("dispatcher")
    declared = TestClient(_declared_nearest_app(town))
    with TestClient(create_app(town["url"])) as client:
        for q in BAD_QUERIES:
            want, got = declared.get("/responders/nearest", params=q), client.get("/responders/nearest", params=q, headers=hdr)
            assert (got.status_code, got.json()) == (422, want.json()), q
    for qs in ("lon=120.5&lat=30&k=7&skill=法律&radius_m=250", "lon=1&lat=2&lon=3", "lon=1&lat=2&skill=&extra=x"):
        want = declared.get("/responders/nearest?" + qs).json()
        raw = quote(qs, safe="=&").encode()  # as a client sends it
        parsed = parse_query(Request({"type": "http", "query_string": raw, "headers": []}), NearestQuery)
        assert parsed.model_dump() == want, qs


def test_openapi_documents_the_hand_parsed_parameters_as_declared_ones(town):
    from api.app import create_app

    doc = create_app(town["url"]).openapi()["paths"]["/responders/nearest"]["get"]
    ref = _declared_nearest_app(town).openapi()["paths"]["/responders/nearest"]["get"]
    strip = [{**{k: v for k, v in p.items() if k != "description"},
              "schema": {k: v for k, v in p["schema"].items() if k != "description"}} for p in doc["parameters"]]
    assert [(p["name"], p["required"]) for p in doc["parameters"]] == [("lon", True), ("lat", True), ("k", False),
                                                                        ("skill", False), ("radius_m", False)]
    assert strip == ref["parameters"] and set(doc["responses"]) == {"200", "422"}


def test_hot_routes_come_first_and_no_other_route_claims_their_paths(town):
    from starlette.routing import Match

    from api.app import HOT_PATHS, create_app

    routes = create_app(town["url"]).router.routes
    at = [getattr(r, "path", None) for r in routes].index("/health")
    assert [p.path for p in routes[at + 1].original_router.routes] == ["/responders/nearest"]
    for path in HOT_PATHS:
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "query_string": b"", "headers": []}
        full = [r for r in routes if r.matches(dict(scope))[0] == Match.FULL]
        assert full == [routes[at + 1]], path  # moving it ahead of the others changes which route answers nothing


def test_a_server_freezes_its_start_up_objects_out_of_the_collector(town):
    """gc.freeze at start-up (setting ``gc_freeze``, on under ``gridmap serve``): the hot paths' p99 was
    full collections walking every object the app imported (bench/dispatch.py: 55 → 11 ms)."""
    import gc

    from api.app import create_app
    from api.settings import Settings

    assert gc.get_freeze_count() == 0
    with TestClient(create_app(town["url"])):
        assert gc.get_freeze_count() == 0  # off by default: tests build many apps in one process
    try:
        with TestClient(create_app(Settings(database_url=town["url"], gc_freeze=True))) as client:
            assert gc.get_freeze_count() > 10_000
            r = client.get("/responders/nearest", params={"lon": LON0, "lat": LAT0}, headers=town["hdr"]("dispatcher"))
            assert r.status_code == 200 and len(r.json()) == 5
    finally:
        gc.unfreeze()


def _hot_routes(app) -> list:
    """Every :class:`api.hotpath.HotRoute` of the app, inside included routers too."""
    from api.hotpath import HotRoute

    out, todo = [], list(app.router.routes)
    while todo:
        r = todo.pop()
        todo.extend(getattr(getattr(r, "original_router", None), "routes", ()))
        if isinstance(r, HotRoute):
            out.append(r)
    return out


def test_every_hot_route_checks_its_caller_before_anything_else(town):
    """A hot route has no app-wide gate: each must answer 401 without a token and with a wrong one, even with
    a bad query string (the caller comes before the parameters, as the gate did)."""
    from api.app import create_app

    app = create_app(town["url"])
    hot = _hot_routes(app)
    assert {r.path for r in hot} == {"/responders/nearest", "/me/households"}
    with TestClient(app) as client:
        for r in hot:
            for headers in ({}, {"Authorization": "Bearer gm_not-a-token"}):
                got = client.get(r.path, params={"lon": "x", "member_id": "m" * 300}, headers=headers)
                assert got.status_code == 401, (r.path, headers)
        too_long = client.get("/me/households", params={"member_id": "m" * 201}, headers=town["hdr"]("dispatcher"))
        assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["query", "member_id"]
    doc = app.openapi()["paths"]["/me/households"]["get"]
    assert [p["name"] for p in doc["parameters"]] == ["member_id"] and set(doc["responses"]) == {"200", "422"}


def test_the_hot_pool_plans_each_statement_once(town):
    """Generic plans on the hot pool's connections, pooled or not (PostgreSQL's default re-planned the nearest
    statement on every execution: 0.28 instead of 0.12 ms of its CPU per query)."""
    from geodata.store import pool as hot

    async def mode(conn):
        return (await (await conn.execute("SHOW plan_cache_mode")).fetchone())["plan_cache_mode"]

    async def both():
        reader = hot.Reader(town["url"], str(town["engine"].url))
        alone = await reader.read(mode)
        await reader.open(1, 2)
        try:
            return alone, await reader.read(mode)
        finally:
            await reader.close()

    assert asyncio.run(both()) == ("force_generic_plan", "force_generic_plan")
