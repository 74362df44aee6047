"""Redraw over HTTP: preview an edit, then commit it."""

from __future__ import annotations

import pytest

from districting_cases import _edit_fixture

X0, Y0 = 230_000.0, 3_350_000.0  # Hangzhou, UTM 51N (metres)


def _store_square(engine, square):
    from geodata.store.importer import import_layer
    from shapely.geometry import MultiPolygon

    comm, hh, res = square
    grids, households, a, b, band_m, area = _edit_fixture(square)
    c = comm.assign(name="社区", street_code="330103001")
    for layer, gdf in (("communities", c), ("grids", grids), ("households", households)):
        if layer != "households":
            gdf = gdf.set_geometry([MultiPolygon([g]) if g.geom_type == "Polygon" else g for g in gdf.geometry], crs="EPSG:4326")
        import_layer(engine, layer, gdf)
    return grids, households, a, b, area


@pytest.mark.db
def test_api_preview_then_commit(db_url, engine, square):
    import sqlalchemy as sa
    from fastapi.testclient import TestClient
    from shapely.geometry import mapping

    from api.app import create_app
    from geodata.store import auth

    grids, households, a, b, area = _store_square(engine, square)
    with engine.begin() as c:
        run = c.execute(sa.text("INSERT INTO link_runs (region, is_current, summary) VALUES ('330103001001', true, '{}') "
                                "RETURNING run_id")).scalar_one()
        for h in households["household_id"]:
            c.execute(sa.text("INSERT INTO links (run_id, household_id, member_id) VALUES (:r, :h, 'M1')"), {"r": run, "h": h})
    client = TestClient(create_app(db_url))

    def hdr(role, regions):
        return {"Authorization": f"Bearer {auth.create_token(engine, role, list(regions))[1]}"}

    body = {"to_grid": a, "areas": [mapping(area)]}
    assert client.post("/grids/preview", json=body, headers=hdr("viewer", ["*"])).status_code == 403
    assert client.post("/grids/preview", json=body, headers=hdr("planner", ["OTHER"])).status_code == 404
    planner = hdr("planner", ["330103001001"])
    assert client.post("/grids/preview", json={"to_grid": "NOPE", "cells": []}, headers=planner).status_code in (404, 422)
    assert client.post("/grids/preview", json={"to_grid": a, "cells": ["zz"]}, headers=planner).status_code == 422

    with engine.connect() as c:
        before = dict(c.execute(sa.text("SELECT grid_code, ST_Area(geom::geography) FROM grids")).all())
    r = client.post("/grids/preview", json=body, headers=planner)
    assert r.status_code == 200, r.text
    prev = r.json()
    assert prev["grids"][0]["grid_code"] == a and prev["moved_households"] > 0 and not prev["committed"]
    from gridmap.districting import preview_edit

    assert prev["moved_household_ids"] == preview_edit(grids, households, a, areas=[area]).moved["household_id"].tolist()
    with engine.connect() as c:  # nothing saved
        assert dict(c.execute(sa.text("SELECT grid_code, ST_Area(geom::geography) FROM grids")).all()) == before

    r = client.post("/grids/commit", json={**body, "versions": prev["versions"]}, headers=planner)
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["committed"] and done["moved_household_ids"] == prev["moved_household_ids"]
    assert done["links_flagged"] == done["moved_households"] and done["runs_flagged"] == 1
    with engine.connect() as c:
        codes = dict(c.execute(sa.text("SELECT household_id, grid_code FROM households WHERE household_id = ANY(:i)"),
                               {"i": done["moved_household_ids"]}).all())
        stale = c.execute(sa.text("SELECT summary->'stale_households' FROM link_runs WHERE run_id = :r"), {"r": run}).scalar_one()
        counts = dict(c.execute(sa.text("SELECT grid_code, count(*) FROM households GROUP BY 1")).all())
        cells_a = c.execute(sa.text("SELECT count(*) FROM grid_cells WHERE grid_code = :g"), {"g": a}).scalar_one()
        after = dict(c.execute(sa.text("SELECT grid_code, ST_Area(geom::geography) FROM grids")).all())
    assert set(codes.values()) == {a}
    assert sorted(stale) == sorted(done["moved_household_ids"])
    got = {g["grid_code"]: g["households"] for g in done["grids"]}
    assert counts[a] == got[a] and counts[b] == got[b]
    assert cells_a > 0 and after[a] > before[a] and after[b] < before[b]
    assert abs(sum(after.values()) - sum(before.values())) < 5.0  # ground moved, not made or lost
