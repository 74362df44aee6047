"""The bad-input corpus (tests/corpus/): every bad file or request gets a clear refusal naming the
problem, and no table changes.

Files go through the real command line (``gridmap import``, in-process through ``api.cli.main``,
one through the installed console script); requests go through the app with a valid token. Before
each case a small valid data set is in the store, and afterwards every table has the same number of
rows (``geodata.store.importer.table_counts`` and every other table of the schema).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from geodata.store.importer import table_counts

pytestmark = pytest.mark.db

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
FILES = CORPUS / "files"
ROOT = Path(__file__).resolve().parents[2]


def all_counts(engine) -> dict[str, int]:
    """Rows in every table of the public schema (whatever migrations added), plus the importer's list."""
    with engine.connect() as c:
        # Partitions are counted through their parent (a street's partition appears with its first row).
        names = [r[0] for r in c.execute(sa.text(
            "SELECT t.tablename FROM pg_tables t JOIN pg_class k ON k.relname = t.tablename "
            "JOIN pg_namespace n ON n.oid = k.relnamespace AND n.nspname = t.schemaname "
            "WHERE t.schemaname = 'public' AND t.tablename <> 'spatial_ref_sys' AND NOT k.relispartition "
            "ORDER BY t.tablename"))]
        counts = {n: c.execute(sa.text(f'SELECT count(*) FROM "{n}"')).scalar_one() for n in names}
    counts.update({f"importer:{k}": v for k, v in table_counts(engine).items()})
    return counts


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """Run ``gridmap <args>`` in this process like the console script does; (exit code, output)."""
    from api.cli import main

    old = sys.argv
    sys.argv = ["gridmap", *args]
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, " ".join((out.out + out.err).split())  # Rich wraps long lines; compare on single spaces


@pytest.fixture()
def based(engine, db_url, monkeypatch, capsys):
    """The store with a valid base data set (2 grids, 2 households); GRIDMAP_DATABASE_URL set to it."""
    monkeypatch.setenv("GRIDMAP_DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "400")
    for layer, name in (("grids", "base_grids.geojson"), ("households", "base_households.csv")):
        code, out = run_cli(["import", layer, str(FILES / name)], capsys)
        assert code == 0, out
    counts = all_counts(engine)
    assert counts["grids"] == 2 and counts["households"] == 2
    return engine


# (layer, file, extra args, fragments the message must contain — file, row, column and the reason)
BAD_FILES = [
    ("households", "households_swapped_latlon.csv", [], ["households_swapped_latlon.csv", "row 2", "column lon",
                                                         "longitude and latitude are swapped"]),
    ("households", "households_outside_china.csv", [], ["row 2", "column lon", "is outside China"]),
    ("households", "households_nan_inf.csv", [], ["row 2, column lon: coordinate is missing, NaN or infinite",
                                                  "row 3, column lat: coordinate is missing, NaN or infinite"]),
    ("households", "households_not_a_number.csv", [], ["row 2, column lon", "'东经120度' is not a number"]),
    ("households", "households_duplicate_ids.csv", [], ["row 3, column household_id", "duplicate id 'H1' (rows 1, 3)"]),
    ("households", "households_empty_id.csv", [], ["row 2, column household_id: empty id"]),
    ("households", "households_missing_id_column.csv", [], ["required column 'household_id' is missing"]),
    ("households", "households_missing_lat_column.csv", [], ["column lat", "no latitude"]),
    ("households", "households_wrong_types.csv", [], ["row 2, column size: 'three' is not a number",
                                                      "row 3, column size: '2.5' is not a whole number",
                                                      "row 4, column size: '-1' is negative"]),
    ("members", "members_bad_bool_and_links.csv", [], ["row 2, column available: 'maybe' is not yes/no",
                                                       "row 3, column min_links: min_links 12 is above max_links 6"]),
    ("incidents", "incidents_missing_reported_at.csv", [], ["required column 'reported_at' is missing"]),
    ("households", "households_empty_file.csv", [], ["households_empty_file.csv", "cannot read CSV"]),
    ("households", "households_id_number_as_number.xlsx", [], ["row 1, column id_number",
                                                               "stored as a number and lost its last digits"]),
    ("households", "households_line_geometry.geojson", [], ["row 1, column geometry",
                                                            "LineString; layer households needs a point"]),
    # GEOS counts a point with a NaN coordinate as empty, so either wording names the problem
    ("households", "households_nan_geometry.geojson", [], ["row 1, column geometry", ("NaN or infinite", "is empty")]),
    ("grids", "grids_self_intersecting.geojson", [], ["row 2, column geometry", "invalid polygon: Self-intersection",
                                                      "--fix"]),
    ("grids", "grids_empty_polygon.geojson", [], ["row 2, column geometry: geometry is empty"]),
    ("grids", "grids_null_geometry.geojson", [], ["row 2, column geometry: geometry is empty"]),
    ("grids", "grids_overlapping.geojson", [], ["grid G1 (row 1) overlaps grid G2 (row 2)"]),
    ("grids", "grids_duplicate_codes.geojson", [], ["column grid_code", "duplicate id 'G1'"]),
    ("grids", "grids_swapped_latlon.geojson", [], ["row 1, column geometry", "swapped"]),
    ("grids", "grids_outside_china.geojson", [], ["row 1, column geometry", "outside China"]),
    ("grids", "grids_missing_code.geojson", [], ["required column 'grid_code' is missing"]),
    ("grids", "grids_point_geometry.geojson", [], ["Point; layer grids needs a polygon"]),
    ("grids", "grids_line_geometry.geojson", [], ["LineString; layer grids needs a polygon"]),
    ("grids", "grids_truncated.geojson", [], ["grids_truncated.geojson", "cannot read file"]),
    ("grids", "grids.kml", [], ["unsupported file type '.kml'"]),
    ("households", "households_swapped_latlon.csv", ["--coords", "mars"], ["mars"]),
    ("parcels", "base_grids.geojson", [], ["unknown layer 'parcels'"]),
]


@pytest.mark.parametrize("layer, name, extra, fragments", BAD_FILES, ids=[f"{c[1]}{'+' if c[2] else ''}" for c in BAD_FILES])
def test_bad_file_is_refused_and_nothing_changes(based, capsys, layer, name, extra, fragments):
    before = all_counts(based)
    code, out = run_cli(["import", layer, str(FILES / name), *extra], capsys)
    assert code == 2, out
    for f in fragments:
        alternatives = f if isinstance(f, tuple) else (f,)
        assert any(a in out for a in alternatives), f"{f!r} not in {out!r}"
    assert "Traceback" not in out
    assert all_counts(based) == before


def test_a_missing_file_is_named(based, capsys):
    before = all_counts(based)
    code, out = run_cli(["import", "households", str(FILES / "no_such_file.csv")], capsys)
    assert code == 2 and "file not found" in out and "no_such_file.csv" in out
    assert all_counts(based) == before


def test_console_script_exits_2_without_traceback(based, db_url):
    """The installed ``gridmap`` command, as a clerk runs it."""
    before = all_counts(based)
    exe = Path(sys.executable).with_name("gridmap")
    env = {**os.environ, "GRIDMAP_DATABASE_URL": db_url, "COLUMNS": "400"}
    p = subprocess.run([str(exe), "import", "households", str(FILES / "households_swapped_latlon.csv")],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "longitude and latitude are swapped" in p.stdout and "Traceback" not in p.stdout + p.stderr
    assert all_counts(based) == before


def test_gbk_shapefile_without_cpg_reads_chinese_right(based, capsys):
    code, out = run_cli(["import", "grids", str(FILES / "grids_gbk_no_cpg.shp")], capsys)
    assert code == 0, out
    assert "no .cpg file; text read as gbk" in out
    with based.connect() as c:
        names = dict(c.execute(sa.text("SELECT grid_code, name FROM grids WHERE grid_code IN ('G1','G2')")).all())
    assert names == {"G1": "武林一网格", "G2": "天水二网格"}


def test_gbk_csv_is_read_as_gbk(based, capsys):
    code, out = run_cli(["import", "households", str(FILES / "households_not_utf8.csv")], capsys)
    assert code == 0 and "read as GBK" in out
    with based.connect() as c:
        assert c.execute(sa.text("SELECT name FROM households WHERE household_id = 'H1'")).scalar() == "张三"


def test_header_only_file_changes_nothing(based, capsys):
    before = all_counts(based)
    code, out = run_cli(["import", "households", str(FILES / "households_header_only.csv")], capsys)
    assert code == 0 and "0 rows read" in out
    assert all_counts(based) == before


def test_injection_text_is_stored_literally(based, capsys):
    """SQL and HTML in text fields are data: stored byte for byte, nothing executed, no table lost."""
    before = all_counts(based)
    code, out = run_cli(["import", "households", str(FILES / "households_injection.csv")], capsys)
    assert code == 0, out
    after = all_counts(based)
    assert after["households"] == before["households"] + 2
    assert set(after) == set(before)  # no table dropped
    with based.connect() as c:
        rows = {r.household_id: r for r in c.execute(sa.text("SELECT household_id, name, tags FROM households"))}
    hid = "H1'); DROP TABLE households;--"
    assert rows[hid].name == "Robert'); DROP TABLE households;--"
    assert rows[hid].tags == ["<svg onload=alert(1)>"]
    assert rows["H2"].name == "<img src=x onerror=alert(1)>"
    assert "13812341234" not in out and "张三" not in out  # the import never prints personal data


def test_fix_repairs_the_bowtie(based, capsys):
    """The refusal's advice works: --fix repairs the self-intersecting grid and says what changed."""
    code, out = run_cli(["import", "grids", str(FILES / "grids_self_intersecting.geojson"), "--fix"], capsys)
    assert code == 0, out
    assert "repaired (Self-intersection" in out


def test_corpus_files_are_what_the_generator_writes(tmp_path, monkeypatch):
    """The committed corpus matches tests/corpus/make_corpus.py (text files compared byte for byte)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "FILES", tmp_path)
    mod.main()
    for p in sorted(tmp_path.iterdir()):
        if p.suffix in (".csv", ".geojson", ".kml"):
            assert (FILES / p.name).read_bytes() == p.read_bytes(), p.name
    assert not (FILES / "grids_gbk_no_cpg.cpg").exists()



# --- bad requests to the HTTP API ------------------------------------------------------------------

API_CASES = json.loads((CORPUS / "api_payloads.json").read_text(encoding="utf-8"))["cases"]
CITY_SEED = 11


@functools.lru_cache(maxsize=1)
def _city_layers():
    from geodata.io import normalise
    from geodata.synth import synth_city

    c = synth_city(1500, seed=CITY_SEED)
    return {layer: normalise(c[layer], layer) for layer in
            ("streets", "communities", "grids", "households", "members", "service_centres")}


@pytest.fixture()
def city(engine):
    """The store holding a small synthetic city (6 grids, 1,500 households, members, a centre)."""
    from geodata.store.importer import import_layer

    c = _city_layers()
    for layer, gdf in c.items():
        import_layer(engine, layer, gdf)
    return {"street": str(c["streets"]["code"].iloc[0]), "community": str(c["communities"]["code"].iloc[0]),
            "grid": str(c["grids"]["grid_code"].iloc[0])}


@pytest.fixture()
def api(db_url, city, engine):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from geodata.store import auth as store

    _, token = store.create_token(engine, "admin", ["*"], label="corpus")
    client = TestClient(create_app(db_url), raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def _fill(value, codes):
    if isinstance(value, str):
        for k, v in codes.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, codes) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, codes) for v in value]
    return value


@pytest.mark.parametrize("case", API_CASES, ids=[c["name"] for c in API_CASES])
def test_bad_request_is_refused_and_nothing_changes(api, city, engine, case):
    paths = api.app.openapi()["paths"]
    template = case["path"]
    if not any(_route_matches(p, template) for p in paths):
        pytest.fail(f"no route {case['method']} {template} in the app (corpus out of date?)")
    before = all_counts(engine)
    kw = {}
    if "params" in case:
        kw["params"] = _fill(case["params"], city)
    if "json" in case:
        kw["json"] = _fill(case["json"], city)
    if "raw" in case:
        kw["content"] = case["raw"].encode("utf-8")
        kw["headers"] = {"content-type": case["content_type"]}
    r = api.request(case["method"], _fill(template, city), **kw)
    assert r.status_code in case["status"], (r.status_code, r.text[:500])
    for frag in case["contains"]:
        assert frag in r.text, f"{frag!r} not in {r.text[:500]!r}"
    after = all_counts(engine)
    allowed = set(case.get("changes", []))
    allowed |= {f"importer:{t}" for t in allowed}
    changed = {t for t in after if after[t] != before.get(t)}
    assert changed <= allowed, {t: (before.get(t), after[t]) for t in changed}


def _route_matches(spec_path: str, path: str) -> bool:
    import re

    pattern = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(spec_path)) + "$"
    return re.match(pattern, path) is not None


def test_hostile_text_is_stored_literally_and_tables_survive(api, engine):
    text_ = "'); DROP TABLE incidents; --<script>alert(1)</script>"
    r = api.post("/incidents", json={"lon": 120.101, "lat": 30.201, "category": text_})
    assert r.status_code == 201, r.text
    got = api.get(f"/incidents/{r.json()['incident_id']}")
    assert got.status_code == 200 and got.json()["category"] == text_
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM incidents WHERE category = :t"), {"t": text_}).scalar() == 1


def test_html_in_data_is_escaped_in_maps(api, city, engine):
    """A category holding a <script> appears on the incident map only escaped."""
    evil = "<script>alert('gridmap')</script>"
    with engine.connect() as c:
        lon, lat = c.execute(sa.text("SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
                                     "FROM grids WHERE grid_code = :g"), {"g": city["grid"]}).one()
    r = api.post("/incidents", json={"lon": lon, "lat": lat, "category": evil, "source": "<b>src</b>"})
    assert r.status_code == 201, r.text
    assert r.json()["grid_code"] == city["grid"]
    page = api.get("/maps/incidents", params={"region": city["street"], "tiles": "none"})
    assert page.status_code == 200, page.text[:300]
    assert evil not in page.text
    assert "gridmap" in page.text  # the category is on the map, escaped


def test_oversized_body_gets_413_before_anything_reads_it(api, engine, monkeypatch, db_url):
    from fastapi.testclient import TestClient

    from api.app import create_app

    monkeypatch.setenv("GRIDMAP_MAX_BODY_BYTES", "100000")
    client = TestClient(create_app(db_url), raise_server_exceptions=False)
    client.headers.update(api.headers)
    before = all_counts(engine)
    big = {"lon": 120.1, "lat": 30.2, "category": "x" * 200_000}
    r = client.post("/incidents", json=big)
    assert r.status_code == 413 and "larger than the limit of 100000 bytes" in r.text
    # Without Content-Length (chunked upload): counted as it streams in and cut off.
    chunks = (b"x" * 10_000 for _ in range(50))
    r = client.post("/incidents", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    # No token at all: still refused for size first (the body is never read).
    r = TestClient(create_app(db_url)).post("/incidents", json=big)
    assert r.status_code == 413
    # Just under the limit: an ordinary answer.
    assert client.post("/incidents", json={"lon": 120.1, "lat": 30.2, "category": "x" * 1000}).status_code in (201, 422)
    assert all_counts(engine)["incidents"] <= before["incidents"] + 1


def test_default_size_limit_is_32_mib(api, engine):
    before = all_counts(engine)
    body = b'{"lon": 120.1, "lat": 30.2, "category": "' + b"x" * (33 * 1024 * 1024) + b'"}'
    r = api.post("/incidents", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413 and str(32 * 1024 * 1024) in r.text
    assert all_counts(engine) == before


def test_deeply_nested_json_is_refused(api, engine):
    before = all_counts(engine)
    depth = 100_000
    r = api.post("/incidents", content=b"[" * depth + b"]" * depth, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in r.text
    nested: dict = {"a": 1}
    for _ in range(500):
        nested = {"a": nested}
    r = api.post("/incidents", json={"lon": 120.1, "lat": 30.2, "category": nested})
    assert r.status_code == 422 and "category" in r.text and len(r.text) < 2000  # the object is not echoed back
    assert all_counts(engine) == before
