"""Grid edits may not destroy grids (issue 11): band and removal rules, versions (lost update) with
real concurrent requests, the region check on locked rows, members moving with the ground, the audit
row, area maths of world-sized selections, NaN refused; and committing a whole redraw (finding 8).

A small synthetic city (2 communities × 6 grids of 365–427 households, all in the urban band) is
loaded into a real PostGIS database for every test.
"""

from __future__ import annotations

import functools
import threading

import geopandas as gpd
import pandas as pd
import pytest
import shapely
import sqlalchemy as sa
from shapely import affinity
from shapely.geometry import box, mapping

from geodata.store import auth

pytestmark = pytest.mark.db


@functools.lru_cache(maxsize=1)
def _layers():
    from geodata.io import normalise
    from geodata.synth import synth_city

    c = synth_city(4800, seed=3, households_per_grid=400, spread=0.1)
    return {layer: normalise(c[layer], layer) for layer in ("streets", "communities", "grids", "households", "members")}


@pytest.fixture()
def city(engine, db_url):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from geodata.store.importer import import_layer

    layers = _layers()
    for layer, gdf in layers.items():
        import_layer(engine, layer, gdf)
    app = create_app(db_url)
    grids = layers["grids"]
    comm = str(layers["communities"]["code"].iloc[0])
    codes = sorted(grids.loc[grids["community_code"] == comm, "grid_code"].astype(str))
    return {"app": app, "client": TestClient(app), "engine": engine, "community": comm,
            "codes": codes, "layers": layers}


def _hdr(engine, role, regions):
    return {"Authorization": f"Bearer {auth.create_token(engine, role, list(regions))[1]}"}


def snapshot(engine) -> dict:
    """Everything a refused request must leave alone: row counts, grid polygons and versions, who is in which grid."""
    from geodata.store.importer import table_counts

    with engine.connect() as c:
        return {
            "counts": table_counts(engine),
            "audit": c.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one(),
            "grids": c.execute(sa.text("SELECT grid_code, ST_AsEWKB(geom), version FROM grids ORDER BY 1")).all(),
            "households": c.execute(sa.text("SELECT household_id, grid_code FROM households ORDER BY 1")).all(),
            "members": c.execute(sa.text("SELECT member_id, grid_code FROM members ORDER BY 1")).all(),
        }


def _grid_metric(engine, code):
    with engine.connect() as c:
        wkb = c.execute(sa.text("SELECT ST_AsBinary(geom) FROM grids WHERE grid_code = :g"), {"g": code}).scalar_one()
    return gpd.GeoSeries(shapely.from_wkb([bytes(wkb)]), crs="EPSG:4326").to_crs("EPSG:32651").iloc[0]


def _strip(engine, a, b, width_m=25.0):
    """GeoJSON (WGS84) of a strip of grid ``b`` along its edge with grid ``a``."""
    ga, gb = _grid_metric(engine, a), _grid_metric(engine, b)
    strip = gb.intersection(ga.buffer(width_m))
    return mapping(gpd.GeoSeries([strip], crs="EPSG:32651").to_crs("EPSG:4326").iloc[0])


def _neighbours(engine, codes):
    ga = _grid_metric(engine, codes[0])
    return codes[0], next(c for c in codes[1:] if ga.intersection(_grid_metric(engine, c)).length > 50)


def _versions(engine) -> dict[str, int]:
    with engine.connect() as c:
        return dict(c.execute(sa.text("SELECT grid_code, version FROM grids")).all())


def _no_dangling(engine) -> None:
    with engine.connect() as c:
        for t in ("households", "members", "incidents"):
            n = c.execute(sa.text(f"SELECT count(*) FROM {t} x WHERE x.grid_code IS NOT NULL AND NOT EXISTS "
                                  f"(SELECT 1 FROM grids g WHERE g.grid_code = x.grid_code)")).scalar_one()
            assert n == 0, t


# -- finding 1: the review's request -------------------------------------------------------------

def _most_of_community(engine, community, scale=0.9):
    with engine.connect() as c:
        wkb = c.execute(sa.text("SELECT ST_AsBinary(geom) FROM communities WHERE code = :c"), {"c": community}).scalar_one()
    poly = shapely.from_wkb(bytes(wkb)).geoms[0]
    return mapping(affinity.scale(poly, scale, scale, origin="centroid"))


def test_review_case_big_polygon_is_refused_and_changes_nothing(city):
    c, eng, comm, codes = city["client"], city["engine"], city["community"], city["codes"]
    planner = _hdr(eng, "planner", [comm])
    body = {"to_grid": codes[1], "areas": [_most_of_community(eng, comm)]}
    before = snapshot(eng)
    r = c.post("/grids/preview", json=body, headers=planner)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert detail["reason"] == "out_of_band"
    named = {g["grid_code"]: g for g in detail["grids"]}
    assert named[codes[1]]["households"] > 500 and named[codes[1]]["households_before"] <= 500
    assert all(g["band_min"] == 300 and g["band_max"] == 500 for g in named.values())
    # The whole community (and a margin) would remove every other grid: refused for that first.
    whole = {"to_grid": codes[1], "areas": [_most_of_community(eng, comm, 1.2)]}
    r = c.post("/grids/preview", json=whole, headers=planner)
    assert r.status_code == 409 and r.json()["detail"]["reason"] == "removes_grid", r.text
    assert {g["grid_code"] for g in r.json()["detail"]["grids"]} == set(codes) - {codes[1]}
    assert all(g["removed"] and g["households_before"] > 0 for g in r.json()["detail"]["grids"])
    r = c.post("/grids/commit", json={**body, "versions": _versions(eng)}, headers=planner)
    assert r.status_code == 409, r.text
    # Allowing removal alone is not enough: the receiving grid would hold far more than 500 households.
    r = c.post("/grids/commit", json={**whole, "versions": _versions(eng), "allow_remove": True}, headers=planner)
    assert r.status_code == 409 and r.json()["detail"]["reason"] == "out_of_band", r.text
    assert codes[1] in r.json()["detail"]["message"] and "(band 300–500)" in r.json()["detail"]["message"]
    assert snapshot(eng) == before


def test_allowed_removal_moves_members_and_leaves_nothing_dangling(city):
    c, eng, comm, codes = city["client"], city["engine"], city["community"], city["codes"]
    planner = _hdr(eng, "planner", [comm])
    body = {"to_grid": codes[1], "areas": [_most_of_community(eng, comm, 1.2)], "allow_remove": True,
            "allow_out_of_band": True}
    prev = c.post("/grids/preview", json=body, headers=planner)
    assert prev.status_code == 200, prev.text
    removed = {g["grid_code"] for g in prev.json()["grids"] if g["removed"]}
    assert removed
    r = c.post("/grids/commit", json={**body, "versions": prev.json()["versions"]}, headers=planner)
    assert r.status_code == 200, r.text
    assert r.json()["members_moved"] > 0
    _no_dangling(eng)
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM grids WHERE grid_code = ANY(:g)"), {"g": list(removed)}).scalar() == 0
        # Every member standing in the receiving grid's new ground (and in none of the others') is filed under it.
        wrong = conn.execute(sa.text(
            "SELECT count(*) FROM members m JOIN grids g ON g.grid_code = :t AND ST_Covers(g.geom, m.geom) "
            "WHERE m.grid_code IS DISTINCT FROM :t AND NOT EXISTS (SELECT 1 FROM grids o WHERE o.grid_code = m.grid_code "
            "AND ST_Covers(o.geom, m.geom))"), {"t": codes[1]}).scalar_one()
        assert wrong == 0


def test_rules_allow_a_step_towards_the_band():
    from geodata.store.grids import EditRefused, check_rules
    from gridmap.districting import EditResult

    def result(*rows):
        g = pd.DataFrame([{"grid_code": c, "households_before": b, "households": a, "band_min": 300, "band_max": 500,
                           "removed": rm} for c, b, a, rm in rows])
        return EditResult(grids=g, moved=pd.DataFrame(), issues=[])

    check_rules(result(("A", 721, 600, False), ("B", 350, 471, False)))  # oversized A gets closer, B stays in band
    check_rules(result(("A", 200, 250, False), ("B", 480, 430, False)))  # undersized A gets closer
    check_rules(result(("A", 450, 450, False)))                          # nothing moves
    for bad, reason in [((("A", 721, 600, False), ("B", 350, 520, False)), "out_of_band"),   # B pushed out
                        ((("A", 721, 800, False),), "out_of_band"),                           # further away
                        ((("A", 400, 520, False),), "out_of_band"),
                        ((("A", 400, 800, False), ("B", 400, 0, True)), "removes_grid")]:
        with pytest.raises(EditRefused) as e:
            check_rules(result(*bad))
        assert e.value.reason == reason
    check_rules(result(("A", 400, 800, False), ("B", 400, 0, True)), allow_remove=True, allow_out_of_band=True)


# -- finding 2: versions and concurrency ---------------------------------------------------------

def test_stale_or_missing_versions_are_refused(city):
    c, eng, comm, codes = city["client"], city["engine"], city["community"], city["codes"]
    planner = _hdr(eng, "planner", [comm])
    a, b = _neighbours(eng, codes)
    body = {"to_grid": a, "areas": [_strip(eng, a, b)], "allow_out_of_band": True}
    prev = c.post("/grids/preview", json=body, headers=planner)
    assert prev.status_code == 200, prev.text
    versions = prev.json()["versions"]
    assert set(versions) == {g["grid_code"] for g in prev.json()["grids"]} and versions[a] == 1
    before = snapshot(eng)
    r = c.post("/grids/commit", json=body, headers=planner)  # no versions
    assert r.status_code == 409 and r.json()["detail"]["reason"] == "stale"
    assert snapshot(eng) == before
    r = c.post("/grids/commit", json={**body, "versions": versions}, headers=planner)
    assert r.status_code == 200, r.text
    assert r.json()["versions"][a] == versions[a] + 1
    before = snapshot(eng)
    r = c.post("/grids/commit", json={**body, "versions": versions}, headers=planner)  # the same versions again
    assert r.status_code == 409
    stale = {g["grid_code"] for g in r.json()["detail"]["grids"]}
    assert stale == {a}  # the strip is a's now: only a is touched, and a changed
    assert snapshot(eng) == before


def test_two_concurrent_commits_one_wins(city):
    from fastapi.testclient import TestClient

    eng, comm, codes, app = city["engine"], city["community"], city["codes"], city["app"]
    a, b = _neighbours(eng, codes)
    planner = _hdr(eng, "planner", [comm])
    bodies = [{"to_grid": a, "areas": [_strip(eng, a, b, 40.0)], "allow_out_of_band": True},
              {"to_grid": b, "areas": [_strip(eng, b, a, 40.0)], "allow_out_of_band": True}]
    versions = _versions(eng)
    barrier = threading.Barrier(2)
    answers: list = [None, None]

    def run(i):
        with TestClient(app) as client:
            barrier.wait()
            answers[i] = client.post("/grids/commit", json={**bodies[i], "versions": versions}, headers=planner)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 409], [r.text for r in answers]
    winner = next(r.json() for r in answers if r.status_code == 200)
    loser = next(r.json() for r in answers if r.status_code == 409)
    assert loser["detail"]["reason"] == "stale"
    with eng.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT grid_code, count(*) FROM households GROUP BY 1")).all())
        moved = conn.execute(sa.text("SELECT DISTINCT grid_code FROM households WHERE household_id = ANY(:i)"),
                             {"i": winner["moved_household_ids"]}).scalars().all()
    assert {g["grid_code"]: g["households"] for g in winner["grids"]} == {g["grid_code"]: stored[g["grid_code"]]
                                                                          for g in winner["grids"]}
    assert moved == [winner["to_grid"]]
    for g in winner["grids"]:
        got = _grid_metric(eng, g["grid_code"])
        want = gpd.GeoSeries([shapely.geometry.shape(g["geometry"])], crs="EPSG:4326").to_crs("EPSG:32651").iloc[0]
        assert got.symmetric_difference(want).area < 1.0


def test_region_check_covers_every_touched_grid_and_commits_are_audited(city):
    c, eng, comm, codes = city["client"], city["engine"], city["community"], city["codes"]
    a, b = _neighbours(eng, codes)
    body = {"to_grid": a, "areas": [_strip(eng, a, b)], "allow_out_of_band": True, "versions": _versions(eng)}
    before = snapshot(eng)
    assert c.post("/grids/commit", json=body, headers=_hdr(eng, "planner", [a])).status_code == 403
    assert snapshot(eng) == before
    with eng.connect() as conn:
        token_id = conn.execute(sa.text("SELECT max(token_id) FROM api_tokens")).scalar_one() + 1
    r = c.post("/grids/commit", json=body, headers=_hdr(eng, "leader", [comm]))
    assert r.status_code == 200, r.text
    with eng.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT token_id, role, action, what, ids, detail FROM audit_log WHERE action <> 'import'")).all()
    assert len(rows) == 1
    tid, role, action, what, ids, detail = rows[0]
    assert (tid, role, action, what) == (token_id, "leader", "grid_edit", "grids")
    assert sorted(ids) == sorted(g["grid_code"] for g in r.json()["grids"])
    assert detail["households_moved"] == r.json()["moved_households"] and detail["grids_removed"] == 0


# -- preview maths -------------------------------------------------------------------------------

def test_world_sized_selection_is_measured_in_metres(city):
    c, eng, comm, codes = city["client"], city["engine"], city["community"], city["codes"]
    a, b = _neighbours(eng, codes)
    strip = shapely.geometry.shape(_strip(eng, a, b))
    hole = box(*shapely.geometry.shape(_most_of_community(eng, comm)).buffer(0.05).bounds)
    world = box(-180, -90, 180, 90).difference(hole)
    body = {"to_grid": a, "areas": [mapping(world), mapping(strip)], "allow_out_of_band": True}
    r = c.post("/grids/preview", json=body, headers=_hdr(eng, "planner", [comm]))
    assert r.status_code == 200, r.text
    note = next(i for i in r.json()["issues"] if "outside community" in i)
    outside = float(note.split(" m²")[0].replace(",", ""))
    earth = 510_065_621_724_088.0  # m², WGS84 ellipsoid
    assert abs(outside - (earth - 0)) / earth < 0.001
    assert r.json()["moved_households"] >= 0
    # Only ground outside the community: nothing to move, a 422 that says where the selection is.
    far = {"to_grid": a, "areas": [mapping(world)]}
    r = c.post("/grids/preview", json=far, headers=_hdr(eng, "planner", [comm]))
    assert r.status_code == 422 and "outside community" in r.text


def test_nan_coordinates_are_not_a_number(city):
    c, eng, comm, codes = city["client"], city["engine"], city["community"], city["codes"]
    raw = ('{"to_grid": "' + codes[0] + '", "areas": [{"type": "Polygon", "coordinates": [[[NaN, 30.2], '
           '[120.1, 30.2], [120.1, 30.3], [NaN, 30.2]]]}]}')
    r = c.post("/grids/preview", content=raw, headers={**_hdr(eng, "planner", [comm]), "Content-Type": "application/json"})
    assert r.status_code == 422 and "not a number" in r.text, r.text


# -- finding 8: commit a whole redraw ------------------------------------------------------------

def _redrawn(city, fresh=True):
    from gridmap.districting import redraw

    layers, comm = city["layers"], city["community"]
    communities = layers["communities"][layers["communities"]["code"] == comm]
    hh = layers["households"][layers["households"]["grid_code"].isin(city["codes"])]
    res = redraw(communities, hh, current=layers["grids"][layers["grids"]["community_code"] == comm],
                 minimal_change=not fresh, seed=1)
    return res.grids[["grid_code", "community_code", "kind", "geometry"]]


def _every_household_in_its_grid(engine, community):
    with engine.connect() as c:
        outside = c.execute(sa.text(
            "SELECT count(*) FROM households h JOIN grids g ON g.grid_code = h.grid_code "
            "WHERE g.community_code = :c AND NOT ST_DWithin(g.geom::geography, h.geom::geography, 50)"),
            {"c": community}).scalar_one()
        uncovered = c.execute(sa.text(
            "SELECT count(*) FROM households h JOIN grids g ON g.grid_code = h.grid_code "
            "WHERE g.community_code = :c AND NOT ST_Covers(g.geom, h.geom)"), {"c": community}).scalar_one()
    return outside, uncovered


def test_commit_redraw_refiles_by_location_and_keeps_names(city):
    from geodata.store.grids import Actor, commit_redraw, scope_versions

    eng, comm, codes = city["engine"], city["community"], city["codes"]
    with eng.connect() as c:
        names_before = dict(c.execute(sa.text("SELECT grid_code, name FROM grids")).all())
        n_households = c.execute(sa.text("SELECT count(*) FROM households")).scalar_one()
    new = _redrawn(city)
    # Split the last grid in two: the east half is a new grid without a code.
    last = new.iloc[-1]
    minx, miny, maxx, maxy = last.geometry.bounds
    mid = (minx + maxx) / 2
    west, east = last.geometry.intersection(box(minx, miny, mid, maxy)), last.geometry.intersection(box(mid, miny, maxx, maxy))
    new.loc[new.index[-1], "geometry"] = west
    new = pd.concat([new, gpd.GeoDataFrame([{**last.to_dict(), "grid_code": None, "geometry": east}], crs=new.crs)],
                    ignore_index=True)
    done = commit_redraw(eng, new, versions=scope_versions(eng, [comm]), actor=Actor(role="cli"),
                         allow_out_of_band=True)
    assert done.added and done.kept
    _no_dangling(eng)
    assert _every_household_in_its_grid(eng, comm) == (0, 0)
    with eng.connect() as c:
        names = dict(c.execute(sa.text("SELECT grid_code, name FROM grids")).all())
        assert c.execute(sa.text("SELECT count(*) FROM households")).scalar_one() == n_households
        assert c.execute(sa.text("SELECT count(*) FROM households WHERE grid_code IS NULL")).scalar_one() == 0
        cells = dict(c.execute(sa.text("SELECT grid_code, count(*) FROM grid_cells GROUP BY 1")).all())
        audit = c.execute(sa.text("SELECT action, role, detail FROM audit_log WHERE action <> 'import'")).all()
    for code in done.kept:
        assert names[code] == names_before[code]
    for code in done.added:
        assert code.startswith(comm + "-") and len(code) == len(comm) + 3
        assert names[code] == f"社区001第{int(code[-2:])}网格"
    assert set(done.removed) == set(codes) - set(done.kept)
    assert all(cells.get(code, 0) > 0 for code in done.kept + done.added)
    assert len(audit) == 1 and audit[0][0] == "grid_redraw" and audit[0][1] == "cli"
    assert audit[0][2]["grids_added"] == len(done.added)


def test_commit_redraw_refusals_change_nothing(city):
    from geodata.store.grids import EditRefused, commit_redraw, scope_versions

    eng, comm = city["engine"], city["community"]
    new = _redrawn(city)
    before = snapshot(eng)
    with pytest.raises(EditRefused) as e:  # stale: computed on other versions
        commit_redraw(eng, new, versions={k: v + 1 for k, v in scope_versions(eng, [comm]).items()})
    assert e.value.reason == "stale"
    split = new.copy()  # two far-apart pieces in one grid
    g0 = split.geometry.iloc[0]
    split.loc[split.index[0], "geometry"] = shapely.MultiPolygon([g0, affinity.translate(g0, 0.05, 0.0)])
    with pytest.raises(EditRefused) as e:
        commit_redraw(eng, split, versions=scope_versions(eng, [comm]))
    assert e.value.reason == "non_contiguous"
    one = new.iloc[[0]].copy()  # one grid for the whole community: far too many households
    one.loc[one.index[0], "geometry"] = shapely.union_all(new.geometry.to_numpy())
    with pytest.raises(EditRefused) as e:
        commit_redraw(eng, one, versions=scope_versions(eng, [comm]))
    assert e.value.reason == "out_of_band" and e.value.grids[0]["households"] > 500
    assert snapshot(eng) == before


def test_redraw_commit_route(city):
    import json

    c, eng, comm = city["client"], city["engine"], city["community"]
    new = _redrawn(city)
    fc = json.loads(new.to_json())
    with eng.connect() as conn:
        versions = dict(conn.execute(sa.text("SELECT grid_code, version FROM grids WHERE community_code = :c"),
                                     {"c": comm}).all())
    body = {"grids": fc, "versions": versions, "allow_out_of_band": True}
    before = snapshot(eng)
    other = str(city["layers"]["communities"]["code"].iloc[1])
    assert c.post("/grids/redraw/commit", json=body, headers=_hdr(eng, "planner", [other])).status_code == 403
    assert c.post("/grids/redraw/commit", json=body, headers=_hdr(eng, "viewer", [comm])).status_code == 403
    assert c.post("/grids/redraw/commit", json={**body, "versions": {}},
                  headers=_hdr(eng, "planner", [comm])).status_code == 409
    assert snapshot(eng) == before
    r = c.post("/grids/redraw/commit", json=body, headers=_hdr(eng, "planner", [comm]))
    assert r.status_code == 200, r.text
    assert r.json()["communities"] == [comm]
    _no_dangling(eng)
    assert _every_household_in_its_grid(eng, comm) == (0, 0)


def test_cli_redraw_commit(city, db_url, tmp_path):
    from typer.testing import CliRunner

    from api.cli import app
    from geodata.io import write_layer

    eng, comm, layers = city["engine"], city["community"], city["layers"]
    communities = layers["communities"][layers["communities"]["code"] == comm]
    hh = layers["households"][layers["households"]["grid_code"].isin(city["codes"])]
    paths = {k: write_layer(v, tmp_path / f"{k}.geojson") for k, v in
             (("households", hh), ("communities", communities),
              ("grids", layers["grids"][layers["grids"]["community_code"] == comm]))}
    args = ["redraw", "--households", str(paths["households"]), "--boundaries", str(paths["communities"]),
            "--grids", str(paths["grids"]), "--fresh", "--out", str(tmp_path / "new.geojson"),
            "--commit", "--database-url", db_url, "--allow-out-of-band"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "committed:" in r.output
    _no_dangling(eng)
    assert _every_household_in_its_grid(eng, comm) == (0, 0)
    with eng.connect() as c:
        assert c.execute(sa.text("SELECT action FROM audit_log WHERE action <> 'import'")).scalars().all() == ["grid_redraw"]
