"""Vector tiles and click details over HTTP against a real PostGIS: contents decoded per layer and role.

A synthetic city of four streets (街道) is loaded once for the module, plus three households alone in
one H3 cell of street A (the k-anonymity probe). Tiles are decoded with ``mapbox-vector-tile``.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime, timedelta

import mapbox_vector_tile
import pytest
import sqlalchemy as sa

from geodata.store import auth as auth_store

pytestmark = pytest.mark.db

PII_KEYS = {"name", "phone", "id_number"}
ROLES = ("admin", "leader", "planner", "dispatcher", "responder", "viewer")
LAYERS = ("grids", "households", "members", "centres", "incidents", "gaps")
#: Three households alone at the south-west corner of the first grid (street A).
LONELY = [("HLONE1", "孤独甲", "13900000001"), ("HLONE2", "孤独乙", "13900000002"), ("HLONE3", "孤独丙", "13900000003")]


@functools.lru_cache(maxsize=1)
def _layers():
    from geodata.io import normalise
    from geodata.synth import synth_city

    c = synth_city(6000, seed=2, households_per_grid=50)
    return {layer: normalise(c[layer], layer) for layer in
            ("streets", "communities", "grids", "households", "members", "service_centres")}


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """XYZ tile holding a WGS84 point (degrees)."""
    n = 2 ** z
    return int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)


def tiles_over(bounds, z: int):
    """Every XYZ tile at zoom ``z`` over a WGS84 box (minx, miny, maxx, maxy)."""
    x0, y1 = tile_of(bounds[0], bounds[1], z)
    x1, y0 = tile_of(bounds[2], bounds[3], z)
    return [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


@pytest.fixture(scope="module")
def city(db_url):
    """The loaded city: client, engine, street codes A/B with their grid codes, lonely-cell position."""
    from conftest import truncate_all
    from fastapi.testclient import TestClient

    from api.app import create_app
    from geodata.store.importer import import_layer
    from geodata.store.session import make_engine

    engine = make_engine(db_url)
    truncate_all(engine)
    layers = _layers()
    for layer, gdf in layers.items():
        import_layer(engine, layer, gdf)
    comm, grids = layers["communities"], layers["grids"]
    streets = sorted(comm["street_code"].astype(str).unique())
    grids_of = {s: set(grids.loc[grids["community_code"].isin(comm.loc[comm["street_code"] == s, "code"]),
                                 "grid_code"].astype(str)) for s in streets}
    first = grids.loc[grids["grid_code"].isin(grids_of[streets[0]])].iloc[0]
    minx, miny, _, _ = first.geometry.bounds
    lon, lat = minx + 0.00012, miny + 0.00012  # ~12 m inside the corner, far from the buildings
    _add_lonely(engine, first["grid_code"], lon, lat)
    client = TestClient(create_app(db_url), raise_server_exceptions=False)
    yield {"client": client, "engine": engine, "A": streets[0], "B": streets[1], "grids_of": grids_of,
           "lonely": (lon, lat), "lonely_grid": str(first["grid_code"]), "bounds": tuple(grids.total_bounds)}
    truncate_all(engine)


def _add_lonely(engine, grid_code: str, lon: float, lat: float) -> None:
    import h3

    cell = h3.str_to_int(h3.latlng_to_cell(lat, lon, 10))
    with engine.begin() as c:
        for hid, name, phone in LONELY:
            c.execute(sa.text("INSERT INTO households (household_id, grid_code, size, name, phone, id_number, h3, geom) "
                              "VALUES (:i, :g, 1, :n, :p, '330103190001011234', :h, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
                      {"i": hid, "g": grid_code, "n": name, "p": phone, "h": cell, "x": lon, "y": lat})


@functools.cache
def _token(engine_url: str, role: str, regions: tuple[str, ...]) -> str:
    from geodata.store.session import make_engine

    engine = make_engine(engine_url)
    member = None
    if role == "responder":
        with engine.connect() as c:
            member = c.execute(sa.text("SELECT member_id FROM members ORDER BY member_id LIMIT 1")).scalar()
    return auth_store.create_token(engine, role, list(regions), member_id=member)[1]


def _get(city, path: str, role: str = "admin", regions=("*",), **headers):
    tok = _token(str(city["engine"].url.render_as_string(hide_password=False)), role, tuple(regions))
    return city["client"].get(path, headers={"Authorization": f"Bearer {tok}", **headers})


def _features(city, layer, z, x, y, role="admin", regions=("*",)) -> list[dict]:
    r = _get(city, f"/tiles/{layer}/{z}/{x}/{y}.mvt", role, regions)
    assert r.status_code in (200, 204), (r.status_code, r.text[:200])
    if r.status_code == 204:
        return []
    assert r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    return mapbox_vector_tile.decode(r.content).get(layer, {}).get("features", [])


# -- privacy -----------------------------------------------------------------------------------------
def test_no_personal_data_in_any_tile_for_any_role(city):
    lon, lat = city["lonely"]
    names = {n for _, n, _ in LONELY}
    phones = {p for _, _, p in LONELY}
    with city["engine"].connect() as c:
        names |= set(c.execute(sa.text("SELECT name FROM households WHERE name IS NOT NULL LIMIT 300")).scalars())
        phones |= set(c.execute(sa.text("SELECT phone FROM members WHERE phone IS NOT NULL LIMIT 300")).scalars())
    seen = 0
    for role in ROLES:
        for z in (12, 14, 16, 17):
            x, y = tile_of(lon, lat, z)
            for layer in LAYERS:
                r = _get(city, f"/tiles/{layer}/{z}/{x}/{y}.mvt", role)
                if r.status_code == 204:
                    continue
                assert r.status_code == 200, (role, layer, z, r.text[:200])
                body = r.content
                for feat in mapbox_vector_tile.decode(body).get(layer, {}).get("features", []):
                    # grids and centres have names of their own (网格/中心 names), people never do in tiles
                    keys = set(feat["properties"]) - ({"name"} if layer in ("grids", "centres") else set())
                    assert not PII_KEYS & keys, (role, layer, z, feat["properties"])
                    seen += 1
                text = body.decode("utf-8", errors="ignore")
                assert not [s for s in names | phones if s in text], (role, layer, z)
                assert "330103190001011234" not in text
    assert seen > 1000  # the loop really looked at features


def test_household_points_only_for_roles_with_personal_data_rights(city):
    lon, lat = city["lonely"]
    x, y = tile_of(lon, lat, 16)
    leader = _features(city, "households", 16, x, y, "leader", (city["A"],))
    assert {"HLONE1", "HLONE2", "HLONE3"} <= {f["properties"].get("id") for f in leader}
    assert all(f["geometry"]["type"] == "Point" for f in leader)
    for role in ("planner", "viewer"):
        feats = _features(city, "households", 16, x, y, role, (city["A"],))
        assert feats and all(f["geometry"]["type"] == "Polygon" for f in feats)
        assert all("id" not in f["properties"] for f in feats)
    members = _features(city, "members", 16, x, y, "planner", (city["A"],))
    assert all(f["geometry"]["type"] == "Polygon" and f["properties"]["n"] >= 5 for f in members)


def test_cells_under_five_households_are_suppressed_without_pii_rights(city):
    import h3

    lon, lat = city["lonely"]
    for z in (15, 16, 17):
        x, y = tile_of(lon, lat, z)
        res = 9 if z == 15 else 10
        lonely_cell = h3.latlng_to_cell(lat, lon, res)
        for role, k_applies in (("viewer", True), ("planner", True)):
            feats = _features(city, "households", z, x, y, role)
            counts = {f["properties"]["cell"]: f["properties"]["n"] for f in feats}
            assert counts and min(counts.values()) >= 5, (z, role, counts)
            assert lonely_cell not in counts
            gaps = _features(city, "gaps", z, x, y, role)
            assert all((f["properties"].get("unlinked") or 0) >= 5 or (f["properties"].get("outside") or 0) >= 5
                       for f in gaps)
            assert lonely_cell not in {f["properties"]["cell"] for f in gaps}
    # the same cell is there, with its 3 households, at zoom 15 for a role allowed personal data
    x, y = tile_of(lon, lat, 15)
    counts = {f["properties"]["cell"]: f["properties"]["n"] for f in _features(city, "households", 15, x, y, "leader")}
    assert counts[h3.latlng_to_cell(lat, lon, 9)] < 5 or min(counts.values()) < 5
    gaps = {f["properties"]["cell"]: f["properties"] for f in _features(city, "gaps", 15, x, y, "leader")}
    assert any(p["unlinked"] < 5 for p in gaps.values())


def test_aggregates_count_every_household_of_the_region_once(city):
    """Cells straddling tile edges carry their full count in every tile, so dedupe by cell and sum."""
    with city["engine"].connect() as c:
        in_a = c.execute(sa.text("SELECT count(*) FROM households WHERE grid_code = ANY(:g)"),
                         {"g": sorted(city["grids_of"][city["A"]])}).scalar()
    cells = {}
    for z, x, y in tiles_over(city["bounds"], 13):
        for f in _features(city, "households", z, x, y, "leader", (city["A"],)):
            cells[f["properties"]["cell"]] = f["properties"]["n"]
    assert sum(cells.values()) == in_a


# -- regions --------------------------------------------------------------------------------------------
def test_tiles_show_only_the_callers_region(city):
    A, B, grids_of = city["A"], city["B"], city["grids_of"]
    seen = set()
    for z, x, y in tiles_over(city["bounds"], 14):
        seen |= {f["properties"]["code"] for f in _features(city, "grids", z, x, y, "leader", (A,))}
        for layer in ("members", "households"):
            for f in _features(city, layer, z, x, y, "leader", (A,)):
                if "grid_code" in f["properties"]:
                    assert f["properties"]["grid_code"] in grids_of[A]
    assert seen == grids_of[A]
    # a tile holding only street B's grids is empty for a street-A token, in every layer
    for z, x, y in tiles_over(city["bounds"], 16):
        codes = {f["properties"]["code"] for f in _features(city, "grids", z, x, y)}
        if codes and codes <= grids_of[B]:
            break
    else:
        pytest.fail("no tile with only street B")
    for layer in LAYERS:
        assert _get(city, f"/tiles/{layer}/{z}/{x}/{y}.mvt", "leader", (A,)).status_code == 204, layer
        assert _get(city, f"/tiles/{layer}/{z}/{x}/{y}.mvt", "leader", (B,)).status_code in (200, 204)
    assert _get(city, f"/tiles/grids/{z}/{x}/{y}.mvt", "leader", (B,)).status_code == 200


# -- HTTP -----------------------------------------------------------------------------------------------
def test_etag_cache_control_and_304(city):
    lon, lat = city["lonely"]
    x, y = tile_of(lon, lat, 14)
    path = f"/tiles/grids/14/{x}/{y}.mvt"
    r = _get(city, path)
    assert r.status_code == 200
    tag = r.headers["etag"]
    assert r.headers["cache-control"] == "private, max-age=60"
    again = _get(city, path, **{"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    assert _get(city, path, **{"If-None-Match": '"other"'}).status_code == 200
    # a changed grid changes the tile and its tag
    with city["engine"].begin() as c:
        c.execute(sa.text("UPDATE grids SET name = '改名网格' WHERE grid_code = :g"), {"g": city["lonely_grid"]})
    try:
        changed = _get(city, path, **{"If-None-Match": tag})
        assert changed.status_code == 200 and changed.headers["etag"] != tag
    finally:
        with city["engine"].begin() as c:
            c.execute(sa.text("UPDATE grids SET name = NULL WHERE grid_code = :g"), {"g": city["lonely_grid"]})


def test_empty_tile_is_204_and_bad_addresses_are_refused(city):
    assert _get(city, "/tiles/grids/14/0/0.mvt").status_code == 204  # the Arctic off Alaska
    assert _get(city, "/tiles/grids/23/0/0.mvt").status_code == 422
    assert _get(city, "/tiles/grids/-1/0/0.mvt").status_code == 422
    assert _get(city, "/tiles/grids/3/8/0.mvt").status_code == 404
    assert _get(city, "/tiles/grids/3/0/8.mvt").status_code == 404
    assert _get(city, "/tiles/streets/3/0/0.mvt").status_code == 404
    assert _get(city, "/tiles/grids/3/a/0.mvt").status_code == 422
    assert city["client"].get("/tiles/grids/14/0/0.mvt").status_code == 401


def test_queries_use_the_stored_wgs84_gist_index(city):
    from geodata.store import tiles

    lon, lat = city["lonely"]
    x, y = tile_of(lon, lat, 16)
    params = {"z": 16, "x": x, "y": y, "margin": 1 / 64, "codes": None, "res": 10, "k": 5}
    for table in ("households", "members"):
        sql = tiles._points_sql(table, table, f"{table[:-1]}_id AS id", None)
        with city["engine"].begin() as c:
            c.execute(sa.text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(c.execute(sa.text("EXPLAIN " + sql), params).scalars())
        assert f"idx_{table}_geom" in plan or f"ix_{table}_geom" in plan, plan


# -- layers ---------------------------------------------------------------------------------------------
def test_grid_tile_attributes(city):
    lon, lat = city["lonely"]
    x, y = tile_of(lon, lat, 15)
    feats = {f["properties"]["code"]: f["properties"] for f in _features(city, "grids", 15, x, y)}
    g = feats[city["lonely_grid"]]
    with city["engine"].connect() as c:
        n = c.execute(sa.text("SELECT count(*) FROM households WHERE grid_code = :g"), {"g": g["code"]}).scalar()
    assert g["households"] == n and g["community_name"].startswith("社区")
    assert g["status"] in ("ok", "under-size", "over-size", "blank")
    assert g["link_coverage_pct"] == 0.0  # no 包片联户 run yet


def test_incident_lights_match_the_dispatch_rules(city):
    from gridmap.dispatch import light

    lon, lat = city["lonely"]
    now = datetime.now(UTC)
    rows = {"I-RED": (now - timedelta(hours=30), now - timedelta(hours=6)),
            "I-YEL": (now - timedelta(hours=22), now + timedelta(hours=2)),
            "I-GRN": (now - timedelta(hours=1), now + timedelta(hours=23))}
    with city["engine"].begin() as c:
        for iid, (rep, dl) in rows.items():
            c.execute(sa.text("INSERT INTO incidents (incident_id, category, reported_at, deadline_at, grid_code, h3, geom)"
                              " VALUES (:i, '环境卫生', :r, :d, :g, 0, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
                      {"i": iid, "r": rep, "d": dl, "g": city["lonely_grid"], "x": lon, "y": lat})
    try:
        x, y = tile_of(lon, lat, 15)
        got = {f["properties"]["id"]: f["properties"]["light"] for f in _features(city, "incidents", 15, x, y)}
        assert got == {"I-RED": "red", "I-YEL": "yellow", "I-GRN": "green"}
        assert got == {i: light(r, d, now) for i, (r, d) in rows.items()}
        assert _features(city, "incidents", 15, x, y, "dispatcher", (city["B"],)) == []
        detail = _get(city, "/features/incidents/I-RED").json()
        assert detail["light"] == "red" and detail["category"] == "环境卫生"
    finally:
        with city["engine"].begin() as c:
            c.execute(sa.text("DELETE FROM incidents WHERE incident_id LIKE 'I-%'"))


# -- click details --------------------------------------------------------------------------------------
def _audit_count(engine) -> int:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM audit_log")).scalar()


def test_feature_details_mask_and_audit(city):
    eng, A = city["engine"], city["A"]
    before = _audit_count(eng)
    planner = _get(city, "/features/households/HLONE1", "planner", (A,))
    assert planner.status_code == 200
    body = planner.json()
    assert body["name"] == "孤**" and body["phone"] == "139****0001" and "lon" not in body
    assert _audit_count(eng) == before  # nothing unmasked, nothing audited
    leader = _get(city, "/features/households/HLONE1", "leader", (A,)).json()
    assert leader["name"] == "孤独甲" and leader["lon"] == pytest.approx(city["lonely"][0])
    assert _audit_count(eng) == before + 1
    grid = _get(city, f"/features/grids/{city['lonely_grid']}", "viewer", (A,)).json()
    assert grid["households"] >= 3 and grid["community_name"].startswith("社区")


def test_missing_and_not_yours_are_the_same_404(city):
    B = city["B"]
    not_yours = _get(city, "/features/households/HLONE1", "leader", (B,))
    missing = _get(city, "/features/households/NO-SUCH", "leader", (B,))
    assert not_yours.status_code == missing.status_code == 404
    assert not_yours.json() == missing.json()
    assert _get(city, f"/features/grids/{city['lonely_grid']}", "viewer", (B,)).status_code == 404
    assert _get(city, "/features/streets/x", "admin").status_code == 404
