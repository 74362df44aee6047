"""Vector tiles and click details over HTTP against a real PostGIS: contents decoded per layer and role.

A synthetic city of four streets (街道) is loaded once for the module, plus three households alone in
one H3 cell of street A (the k-anonymity probe). Tiles are decoded with ``mapbox-vector-tile``.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime, timedelta

import mapbox_vector_tile
import numpy as np
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
        for role in ("viewer", "planner"):
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
        assert f"idx_{table}_geom" in plan or f"ix_{table}_geom" in plan or "_geom_idx on " in plan, plan  # partitions (0014)


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


# -- GCJ-02 (Amap) tiles -------------------------------------------------------------------------------
def _tile_lonlat(z: int, x: int, y: int, u, v):
    """WGS84-style lon/lat (degrees) of tile units (u right, v down, extent 4096) in tile z/x/y."""
    n = 2 ** z
    gx, gy = (x + np.asarray(u) / 4096) / n, (y + np.asarray(v) / 4096) / n
    return gx * 360 - 180, np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * gy))))


def _decoded(city, layer, z, x, y, role="admin", coords="gcj02", regions=("*",)):
    r = _get(city, f"/tiles/{layer}/{z}/{x}/{y}.mvt?coords={coords}", role, regions)
    assert r.status_code in (200, 204), (r.status_code, r.text[:200])
    if r.status_code == 204:
        return []
    layers = mapbox_vector_tile.decode(r.content, default_options={"y_coord_down": True})
    return layers.get(layer, {}).get("features", [])


def _vertices(geometry) -> np.ndarray:
    coords = geometry["coordinates"]
    if geometry["type"] == "Point":
        return np.array([coords], float)
    rings = coords if geometry["type"] == "Polygon" else [r for poly in coords for r in poly]
    return np.array([p for ring in rings for p in ring], float)


@pytest.mark.parametrize("z, tol_m", [(17, 0.05), (22, 0.01)])
def test_gcj02_household_points_are_shifted_exactly(city, z, tol_m):
    from geodata.crs import wgs84_to_gcj02
    from gridmap.metric import haversine_m

    lon, lat = city["lonely"]
    glon, glat = (float(v) for v in wgs84_to_gcj02(lon, lat))
    x, y = tile_of(glon, glat, z)
    feats = {f["properties"]["id"]: f for f in _decoded(city, "households", z, x, y, "leader", regions=(city["A"],))}
    assert {"HLONE1", "HLONE2", "HLONE3"} <= set(feats)
    u, v = _vertices(feats["HLONE1"]["geometry"])[0]
    got_lon, got_lat = _tile_lonlat(z, x, y, u, v)
    assert float(haversine_m(got_lon, got_lat, glon, glat)) <= tol_m
    assert float(haversine_m(got_lon, got_lat, lon, lat)) > 100  # really moved (GCJ-02 is ~500 m off here)
    # the same address in WGS84 is another piece of ground: the lonely households are not in it
    plain = {f["properties"].get("id") for f in _decoded(city, "households", z, x, y, "leader", "wgs84")}
    assert "HLONE1" not in plain


@pytest.mark.parametrize("z, tol_m", [(14, 0.6), (17, 0.05), (22, 0.01)])
def test_gcj02_grid_outlines_are_shifted_vertex_by_vertex(city, z, tol_m):
    from geodata.crs import wgs84_to_gcj02
    from gridmap.metric import haversine_m

    with city["engine"].connect() as c:
        wkb = c.execute(sa.text("SELECT ST_AsBinary(geom) FROM grids WHERE grid_code = :g"),
                        {"g": city["lonely_grid"]}).scalar()
    import shapely

    ring = shapely.get_coordinates(shapely.from_wkb(bytes(wkb)))
    want_lon, want_lat = wgs84_to_gcj02(ring[:, 0], ring[:, 1])
    x, y = tile_of(float(want_lon[0]), float(want_lat[0]), z)
    grid = [f for f in _decoded(city, "grids", z, x, y) if f["properties"]["code"] == city["lonely_grid"]]
    assert len(grid) == 1
    uv = _vertices(grid[0]["geometry"])
    inside = uv[(uv > -60).all(axis=1) & (uv < 4096 + 60).all(axis=1)]  # vertices not made by clipping
    assert len(inside)
    got_lon, got_lat = _tile_lonlat(z, x, y, inside[:, 0], inside[:, 1])
    dist = haversine_m(got_lon[:, None], got_lat[:, None], want_lon[None, :], want_lat[None, :])
    assert float(dist.min(axis=1).max()) <= tol_m


def test_gcj02_h3_cells_are_shifted(city):
    import h3

    from geodata.crs import wgs84_to_gcj02
    from gridmap.metric import haversine_m

    lon, lat = city["lonely"]
    glon, glat = (float(v) for v in wgs84_to_gcj02(lon, lat))
    z = 15
    x, y = tile_of(glon, glat, z)
    feats = _decoded(city, "households", z, x, y, "planner", regions=(city["A"],))
    assert feats
    worst = 0.0
    for f in feats:
        uv = _vertices(f["geometry"])
        uv = uv[(uv > -60).all(axis=1) & (uv < 4096 + 60).all(axis=1)]
        if not len(uv):
            continue
        b = np.array(h3.cell_to_boundary(f["properties"]["cell"]))  # (lat, lng)
        want_lon, want_lat = wgs84_to_gcj02(b[:, 1], b[:, 0])
        got_lon, got_lat = _tile_lonlat(z, x, y, uv[:, 0], uv[:, 1])
        dist = haversine_m(got_lon[:, None], got_lat[:, None], want_lon[None, :], want_lat[None, :])
        worst = max(worst, float(dist.min(axis=1).max()))
    assert worst <= 0.3  # a z15 tile unit is ~0.26 m at this latitude


def test_gcj02_etag_differs_and_unknown_datum_is_refused(city):
    from geodata.crs import wgs84_to_gcj02
    from geodata.store.tiles import etag

    lon, lat = city["lonely"]
    x, y = tile_of(*(float(v) for v in wgs84_to_gcj02(lon, lat)), 13)  # grids there in both datums
    plain = _get(city, f"/tiles/grids/13/{x}/{y}.mvt")
    shifted = _get(city, f"/tiles/grids/13/{x}/{y}.mvt?coords=gcj02")
    assert plain.status_code == shifted.status_code == 200
    assert plain.headers["etag"] != shifted.headers["etag"]
    assert _get(city, f"/tiles/grids/13/{x}/{y}.mvt?coords=gcj02",
                **{"If-None-Match": plain.headers["etag"]}).status_code == 200
    assert etag(b"same body", "wgs84") != etag(b"same body", "gcj02")
    assert _get(city, f"/tiles/grids/13/{x}/{y}.mvt?coords=bd09").status_code == 422


def test_sql_gcj02_formula_matches_python(city):
    """The SQL shift of points agrees with geodata.crs to well under a millimetre, and leaves points
    outside China alone."""
    from geodata.crs import wgs84_to_gcj02
    from geodata.store.tiles import _gcj02_point_sql
    from gridmap.metric import haversine_m

    rng = np.random.default_rng(5)
    lon = np.concatenate([rng.uniform(73.5, 135, 300), [10.0]])
    lat = np.concatenate([rng.uniform(4, 53.5, 300), [50.0]])
    sql = (f"SELECT ST_X(s), ST_Y(s) FROM (SELECT {_gcj02_point_sql('p')} AS s FROM unnest(CAST(:xs AS float8[]), "
           "CAST(:ys AS float8[])) AS u(x, y), LATERAL (SELECT ST_SetSRID(ST_MakePoint(u.x, u.y), 4326) AS p) q) r")
    with city["engine"].connect() as c:
        got = np.array(c.execute(sa.text(sql), {"xs": lon.tolist(), "ys": lat.tolist()}).all())
    want_lon, want_lat = wgs84_to_gcj02(lon, lat)
    assert float(haversine_m(got[:, 0], got[:, 1], want_lon, want_lat).max()) < 1e-3
    assert got[-1].tolist() == [10.0, 50.0]


# -- grid figures -------------------------------------------------------------------------------------
def _grid_props(city, code, z=15):
    with city["engine"].connect() as c:
        lon, lat = c.execute(sa.text("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM grids "
                                     "WHERE grid_code = :g) s"), {"g": code}).one()
    x, y = tile_of(lon, lat, z)
    return {f["properties"]["code"]: f["properties"] for f in _features(city, "grids", z, x, y)}[code]


def _live_count(city, code) -> int:
    with city["engine"].connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM households WHERE grid_code = :g"), {"g": code}).scalar()


def test_grid_figures_follow_committed_writes_only(city):
    """Figures come from grid_figures, refreshed after every committed write to the tables under them —
    also one that committed while a refresh ran — and never from a write that rolled back."""
    eng, code = city["engine"], city["lonely_grid"]
    lon, lat = city["lonely"]
    before = _grid_props(city, code)["households"]
    assert before == _live_count(city, code)
    insert = sa.text("INSERT INTO households (household_id, grid_code, size, h3, geom) "
                     "VALUES (:i, :g, 1, 0, ST_SetSRID(ST_MakePoint(:x, :y), 4326))")
    try:
        with eng.begin() as c:
            c.execute(insert, {"i": "HFIG1", "g": code, "x": lon, "y": lat})
        assert _grid_props(city, code)["households"] == before + 1
        with pytest.raises(RuntimeError), eng.begin() as c:  # a write that fails leaves the figures alone
            c.execute(insert, {"i": "HFIG2", "g": code, "x": lon, "y": lat})
            raise RuntimeError("refused")
        assert _grid_props(city, code)["households"] == before + 1
        # a write still open while a tile refreshes the figures is picked up once it commits
        with eng.connect() as open_tx:
            open_tx.execute(insert, {"i": "HFIG3", "g": code, "x": lon, "y": lat})
            assert _grid_props(city, code)["households"] == before + 1
            open_tx.commit()
        assert _grid_props(city, code)["households"] == before + 2 == _live_count(city, code)
    finally:
        with eng.begin() as c:
            c.execute(sa.text("DELETE FROM households WHERE household_id LIKE 'HFIG%'"))
    assert _grid_props(city, code)["households"] == before


def test_grid_figures_follow_link_runs(city):
    eng, code = city["engine"], city["lonely_grid"]
    assert _grid_props(city, code)["link_coverage_pct"] == 0.0
    with eng.begin() as c:
        run = c.execute(sa.text("INSERT INTO link_runs (region, is_current) VALUES ('T-FIG', true) RETURNING run_id")).scalar()
        c.execute(sa.text("INSERT INTO links (run_id, household_id, member_id) SELECT :r, household_id, 'M-FIG' "
                          "FROM households WHERE grid_code = :g"), {"r": run, "g": code})
    try:
        assert _grid_props(city, code)["link_coverage_pct"] == 100.0
        with eng.begin() as c:
            c.execute(sa.text("UPDATE link_runs SET is_current = false WHERE run_id = :r"), {"r": run})
        assert _grid_props(city, code)["link_coverage_pct"] == 0.0
    finally:
        with eng.begin() as c:
            c.execute(sa.text("DELETE FROM link_runs WHERE region = 'T-FIG'"))


def test_grid_tile_query_no_longer_counts_households(city):
    """The speed fix: drawing grids reads the per-grid figures, not the households, members or links."""
    from geodata.store import tiles

    lon, lat = city["lonely"]
    x, y = tile_of(lon, lat, 12)
    params = {"z": 12, "x": x, "y": y, "margin": 1 / 64, "codes": None, **tiles._grid_params()}
    with city["engine"].connect() as c:
        plan = "\n".join(c.execute(sa.text("EXPLAIN " + tiles._grids_sql(None)), params).scalars())
    assert "grid_figures" in plan
    assert not any(t in plan for t in (" on households", " on members", " on links", " on link_runs")), plan
    # one table, like tipg's (0017): the grid's own columns and its community's name are copied in too
    assert not any(t in plan for t in (" on grids ", " on communities ")), plan
    assert "ix_grid_figures_geom_3857" in plan or "Seq Scan on grid_figures" in plan, plan


def test_grid_tiles_follow_a_renamed_community(city):
    """The community name a grids tile shows is copied into grid_figures; renaming the community (a
    write to ``communities``, trigger of 0017) refreshes it before the next tile."""
    code = city["lonely_grid"]
    before = _grid_props(city, code)["community_name"]
    with city["engine"].begin() as c:
        c.execute(sa.text("UPDATE communities SET name = '改名社区' WHERE code = (SELECT community_code FROM grids "
                          "WHERE grid_code = :g)"), {"g": code})
    try:
        assert _grid_props(city, code)["community_name"] == "改名社区"
    finally:
        with city["engine"].begin() as c:
            c.execute(sa.text("UPDATE communities SET name = :n WHERE code = (SELECT community_code FROM grids "
                              "WHERE grid_code = :g)"), {"n": before, "g": code})
    assert _grid_props(city, code)["community_name"] == before


# -- partitions (issue 18) ----------------------------------------------------------------------------
def _tile_statements(city, layer, z, x, y, regions) -> list[tuple[str, dict]]:
    """The SQL statements (driver form, with parameters) ``render_tile`` runs for a caller of ``regions``."""
    from geodata.store import auth as store_auth
    from geodata.store import tiles

    scope = store_auth.expand_regions(city["engine"], list(regions))
    seen: list[tuple[str, dict]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, dict(parameters or {})))

    sa.event.listen(city["engine"], "before_cursor_execute", keep)
    try:
        tiles.render_tile(city["engine"], layer, z, x, y, grid_codes=scope.grids, community_codes=scope.communities,
                          street_codes=scope.streets, pii=True)
    finally:
        sa.event.remove(city["engine"], "before_cursor_execute", keep)
    return seen


def _partitions_read(engine, statement: str, parameters: dict) -> set[str]:
    """Partitions of households/members/links/incidents an EXPLAIN ANALYZE of the statement shows read."""
    with engine.connect() as c:
        plan = c.exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, FORMAT JSON) " + statement,
                                 parameters).scalar_one()
    out: set[str] = set()

    def walk(node):
        name = node.get("Relation Name", "")
        if "_p_" in name and node.get("Actual Loops", 1) != 0:
            out.add(name)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return out


@pytest.mark.parametrize("level", ["street", "community", "grid"])
def test_region_tiles_read_only_their_streets_partitions(city, level):
    """A street, community or grid leader's households, members, incidents and gaps tiles read the
    partitions of that one street (and the default one), never another street's (EXPLAIN ANALYZE)."""
    import h3

    A, grid = city["A"], city["lonely_grid"]
    region = {"street": A, "community": grid[:-2], "grid": grid}[level]
    lon, lat = city["lonely"]
    with city["engine"].begin() as c:  # an incident, so the incidents tile has a row to read
        c.execute(sa.text("INSERT INTO incidents (incident_id, category, reported_at, grid_code, h3, geom) VALUES "
                          "('I-PART', '环境卫生', now(), :g, :h, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
                  {"g": grid, "h": h3.str_to_int(h3.latlng_to_cell(lat, lon, 10)), "x": lon, "y": lat})
        # one household of the grid linked: the grid is partly linked, so the gaps tile reads its households
        run = c.execute(sa.text("INSERT INTO link_runs (region, is_current) VALUES ('PART-RUN', true) "
                                "RETURNING run_id")).scalar_one()
        c.execute(sa.text("INSERT INTO links (run_id, household_id, member_id) VALUES (:r, 'HLONE1', 'M-PART')"),
                  {"r": run})
    try:
        for layer, z in (("households", 16), ("members", 16), ("incidents", 15), ("gaps", 14)):
            x, y = tile_of(lon, lat, z)
            statements = [(s, p) for s, p in _tile_statements(city, layer, z, x, y, (region,))
                          if "streets_of" in p]
            assert statements, (layer, z)
            for statement, parameters in statements:
                # (a region code that is no street may ride along: it names no partition)
                assert A in parameters["streets_of"] and city["B"] not in parameters["streets_of"]
                read = _partitions_read(city["engine"], statement, parameters)
                table = "households" if layer == "gaps" else layer
                assert f"{table}_p_{A}" in read, (layer, z, read)
                others = {r for r in read if not r.endswith(("_p_default", f"_p_{A}"))}
                assert not others, (layer, z, others)
    finally:
        with city["engine"].begin() as c:
            c.execute(sa.text("DELETE FROM incidents WHERE incident_id = 'I-PART'"))
            c.execute(sa.text("DELETE FROM link_runs WHERE region = 'PART-RUN'"))


def test_aggregate_tiles_read_the_cell_counts_not_the_people(city):
    """Households and members as H3 aggregates come from h3_counts (0017): a street leader's tile reads no
    partition of households or members — and the counts are those of the rows."""
    import h3

    lon, lat = city["lonely"]
    x, y = tile_of(lon, lat, 13)
    for layer in ("households", "members"):
        statements = [s for s in _tile_statements(city, layer, 13, x, y, (city["A"],)) if "h3_counts" in s[0]]
        assert statements, layer
        for statement, parameters in statements:
            assert not _partitions_read(city["engine"], statement, parameters), (layer, statement)
    x, y = tile_of(lon, lat, 15)
    got = {f["properties"]["cell"]: f["properties"]["n"] for f in _features(city, "households", 15, x, y, "leader",
                                                                             (city["A"],))}
    cell = h3.latlng_to_cell(lat, lon, 9)
    with city["engine"].connect() as c:
        rows = c.execute(sa.text("SELECT h3 FROM households WHERE grid_code = ANY(:g)"),
                         {"g": sorted(city["grids_of"][city["A"]])}).scalars().all()
    assert got[cell] == sum(1 for r in rows if r and h3.cell_to_parent(h3.int_to_str(r), 9) == cell)


def test_cell_counts_follow_committed_writes(city):
    """A household added, moved to another grid's region or deleted changes its cell's count in the next
    tile (h3_counts rewritten after the write; only changed rows)."""
    import h3

    lon, lat = city["lonely"]
    x, y = tile_of(lon, lat, 15)
    cell = h3.latlng_to_cell(lat, lon, 9)

    def count(regions=(city["A"],)):
        feats = _features(city, "households", 15, x, y, "leader", regions)
        return {f["properties"]["cell"]: f["properties"]["n"] for f in feats}.get(cell, 0)

    before, h = count(), h3.str_to_int(h3.latlng_to_cell(lat, lon, 10))
    insert = sa.text("INSERT INTO households (household_id, grid_code, size, h3, geom) "
                     "VALUES (:i, :g, 1, :h, ST_SetSRID(ST_MakePoint(:x, :y), 4326))")
    try:
        with city["engine"].begin() as c:
            for i in ("HCNT1", "HCNT2"):
                c.execute(insert, {"i": i, "g": city["lonely_grid"], "h": h, "x": lon, "y": lat})
        assert count() == before + 2
        other = sorted(city["grids_of"][city["B"]])[0]  # now counted in street B's grid, not in A's
        with city["engine"].begin() as c:
            c.execute(sa.text("UPDATE households SET grid_code = :g WHERE household_id = 'HCNT2'"), {"g": other})
        assert count() == before + 1 and count((city["B"],)) == 1
    finally:
        with city["engine"].begin() as c:
            c.execute(sa.text("DELETE FROM households WHERE household_id LIKE 'HCNT%'"))
    assert count() == before and count((city["B"],)) == 0


def test_going_on_and_off_duty_leaves_the_grid_tiles_fresh_and_a_move_rebuilds_them(city):
    """在岗/离岗 (POST /me/available) changes no figure a grids tile shows: the next tile rebuilds nothing
    and shows the same figures; moving that member to another grid rebuilds them and the tile shows it
    (migration 0019's column rules)."""
    eng = city["engine"]
    with eng.connect() as c:
        member, grid = c.execute(sa.text("SELECT member_id, grid_code FROM members ORDER BY member_id LIMIT 1")).one()
        other = c.execute(sa.text("SELECT grid_code FROM grids WHERE grid_code <> :g ORDER BY grid_code LIMIT 1"),
                          {"g": grid}).scalar()
    tok = _token(str(eng.url.render_as_string(hide_password=False)), "responder", ("*",))

    def rebuilds(code) -> tuple[bool, int]:
        """Whether drawing the tile of grid ``code`` rebuilt the figures, and its member count."""
        with eng.connect() as c:
            lon, lat = c.execute(sa.text("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p "
                                         "FROM grids WHERE grid_code = :g) s"), {"g": code}).one()
        x, y = tile_of(lon, lat, 14)
        statements = [s for s, _ in _tile_statements(city, "grids", 14, x, y, ("*",))]
        members = {f["properties"]["code"]: f["properties"]["members"] for f in _features(city, "grids", 14, x, y)}
        return any("DELETE FROM grid_figures_dirty" in s for s in statements), members[code]

    _, before = rebuilds(grid)  # whatever earlier tests left is rebuilt here
    try:
        for available in (False, True):
            r = city["client"].post("/me/available", json={"available": available},
                                    headers={"Authorization": f"Bearer {tok}"})
            assert r.status_code == 200 and r.json()["available"] is available, r.text
            assert rebuilds(grid) == (False, before)
        with eng.begin() as c:
            c.execute(sa.text("UPDATE members SET grid_code = :o WHERE member_id = :m"), {"o": other, "m": member})
        assert rebuilds(grid) == (True, before - 1)
    finally:
        with eng.begin() as c:
            c.execute(sa.text("UPDATE members SET grid_code = :g, available = true WHERE member_id = :m"),
                      {"g": grid, "m": member})
    assert rebuilds(grid) == (True, before)


# -- gaps from the cached counts ----------------------------------------------------------------------
_LIVE_GAPS = """
SELECT h.h3, h.grid_code,
       NOT EXISTS (SELECT 1 FROM links l JOIN link_runs r ON r.run_id = l.run_id AND r.is_current
                   WHERE l.household_id = h.household_id) AS unlinked,
       NOT EXISTS (SELECT 1 FROM service_centres s
                   WHERE ST_DWithin(s.geom::geography, h.geom::geography, COALESCE(s.radius_m, 1000))) AS outside
FROM households h"""


def _live_gaps(city, res: int, grids=None) -> dict[str, tuple[int, int, int]]:
    """Per H3 cell at ``res``: households, unlinked, outside — every household tested, none cached."""
    import h3

    out: dict[str, list[int]] = {}
    with city["engine"].connect() as c:
        for cell, grid, unlinked, outside in c.execute(sa.text(_LIVE_GAPS)):
            if grids is not None and grid not in grids:
                continue
            s = out.setdefault(h3.cell_to_parent(h3.int_to_str(cell), res), [0, 0, 0])
            s[0], s[1], s[2] = s[0] + 1, s[1] + int(unlinked), s[2] + int(outside)
    return {k: tuple(v) for k, v in out.items()}


def _gap_tiles_match(city, role: str, regions, grids, pii: bool, k: int = 5) -> tuple[int, set[str]]:
    """Every gaps feature of the tiles at zooms 12–15 over the lonely corner equals the live count of its cell
    (values under k absent for roles without personal data), and every cell the live count puts inside a
    tile with a gap worth showing is there. Returns the features compared and the kinds of cells seen."""
    import h3

    from geodata.store.tiles import cell_res

    lon, lat = city["lonely"]
    compared, kinds = 0, set()
    for z in (12, 13, 14, 15):
        live = _live_gaps(city, cell_res(z), grids)
        x, y = tile_of(lon, lat, z)
        got = {f["properties"]["cell"]: f["properties"] for f in _features(city, "gaps", z, x, y, role, regions)}
        for cell, p in got.items():
            n, unlinked, outside = live[cell]
            shown = {key: v if pii or v >= k or v == 0 else None
                     for key, v in (("households", n), ("unlinked", unlinked), ("outside", outside))}
            assert {key: p.get(key) for key in shown} == shown, (z, cell, p, live[cell])
            kinds |= {"outside-all" if outside == n else "outside-none" if outside == 0 else "outside-some",
                      "linked-all" if unlinked == 0 else "linked-none" if unlinked == n else "linked-some"}
            compared += 1
        for cell, (_, unlinked, outside) in live.items():
            cy, cx = h3.cell_to_latlng(cell)
            if tile_of(cx, cy, z) == (x, y) and (pii or unlinked >= k or outside >= k):
                assert cell in got, (z, cell, live[cell])
    return compared, kinds


def test_gaps_tiles_equal_the_live_count_before_and_after_writes(city):
    """The gaps layer is read from h3_counts / grid_figures plus the households a circle's edge or a partly
    linked grid leaves open: each feature equals every household tested live — for an admin and a street's
    planner (no personal data: k-anonymity), with grids fully, partly and not linked, cells wholly inside, wholly outside and
    across a circle — and again after committed writes (a household added, a link saved, a circle shrunk)."""
    import h3

    A = city["A"]
    grids = sorted(city["grids_of"][A])
    lon, lat = city["lonely"]
    engine = city["engine"]
    with engine.connect() as c:
        radii = dict(c.execute(sa.text("SELECT centre_id, radius_m FROM service_centres")).all())
        near = c.execute(sa.text("SELECT centre_id FROM service_centres ORDER BY geom <-> "
                                 "ST_SetSRID(ST_MakePoint(:x, :y), 4326) LIMIT 2"), {"x": lon, "y": lat}).scalars().all()
    try:
        with engine.begin() as c:  # grid 0 all linked, grid 1 half linked, the rest not; two small circles
            run = c.execute(sa.text("INSERT INTO link_runs (region, is_current) VALUES ('GAPS-RUN', true) "
                                    "RETURNING run_id")).scalar_one()
            c.execute(sa.text("INSERT INTO links (run_id, household_id, member_id) SELECT :r, household_id, 'M-GAP' "
                              "FROM households WHERE grid_code = :g0 OR (grid_code = :g1 AND random() < 0.5)"),
                      {"r": run, "g0": grids[0], "g1": grids[1]})
            c.execute(sa.text("UPDATE service_centres SET radius_m = 180 WHERE centre_id = ANY(:ids)"), {"ids": near})
        compared, kinds = _gap_tiles_match(city, "admin", ("*",), None, pii=True)
        assert compared > 10 and kinds == {"outside-all", "outside-none", "outside-some", "linked-all",
                                           "linked-none", "linked-some"}, (compared, kinds)
        assert _gap_tiles_match(city, "planner", (A,), set(grids), pii=False)[0] > 0
        with engine.begin() as c:  # writes: a household, a link, a circle
            c.execute(sa.text("INSERT INTO households (household_id, grid_code, size, h3, geom) "
                              "VALUES ('HGAP1', :g, 1, :h, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
                      {"g": grids[1], "h": h3.str_to_int(h3.latlng_to_cell(lat + 0.001, lon + 0.001, 10)),
                       "x": lon + 0.001, "y": lat + 0.001})
            c.execute(sa.text("INSERT INTO links (run_id, household_id, member_id) SELECT :r, household_id, 'M-GAP' "
                              "FROM households WHERE grid_code = :g ORDER BY household_id LIMIT 1"),
                      {"r": run, "g": grids[2]})
            c.execute(sa.text("UPDATE service_centres SET radius_m = 600 WHERE centre_id = :i"), {"i": near[0]})
        assert _gap_tiles_match(city, "admin", ("*",), None, pii=True)[0] > 10
        assert _gap_tiles_match(city, "planner", (A,), set(grids), pii=False)[0] > 0
    finally:
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM households WHERE household_id = 'HGAP1'"))
            c.execute(sa.text("DELETE FROM link_runs WHERE region = 'GAPS-RUN'"))
            for centre, radius in radii.items():
                c.execute(sa.text("UPDATE service_centres SET radius_m = :m WHERE centre_id = :i"),
                          {"m": radius, "i": centre})


def test_gaps_count_live_when_the_cached_cells_do_not_add_up():
    """A parent cell whose resolution-10 cells were not all found (none, or fewer households than the parent
    holds) makes the tile count live rather than draw a wrong figure."""
    from geodata.store.gap_tiles import complete

    row = (7, 70, "G1", 4, 4, "all", 120.1, 30.2)  # parent, cell, grid, n, parent's n, link state, lon, lat
    assert complete([row])
    assert not complete([row[:4] + (6,) + row[5:]])
    assert not complete([(7, None, None, None, 4, None, None, None)])
    assert complete([])


def test_gcj02_gaps_tile_carries_the_live_counts(city):
    """On an Amap base map the gaps tile is asked at its GCJ-02 address: the cells there carry the live
    counts of their households (the cached path reads the WGS84 preimage of the tile)."""
    from geodata.crs import wgs84_to_gcj02

    lon, lat = city["lonely"]
    glon, glat = (float(v) for v in wgs84_to_gcj02(lon, lat))
    for z in (13, 15):
        x, y = tile_of(glon, glat, z)
        live = _live_gaps(city, 9 if z == 15 else 8)
        feats = _decoded(city, "gaps", z, x, y)
        assert feats, z
        for f in feats:
            p = f["properties"]
            assert (p["households"], p["unlinked"], p["outside"]) == live[p["cell"]], (z, p)
