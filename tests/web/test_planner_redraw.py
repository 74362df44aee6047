"""The redraw pages and their JSON routes through the app (TestClient, real PostGIS): a planner of the
street opens the form, queues a job, edits a draft by hand, exports it; a planner of another street
gets the same 404 everywhere and nothing changes; a stale commit is refused in Chinese."""

from __future__ import annotations

import io
import zipfile

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from api.usecases import drafts as uc
from geodata.store import users
from geodata.store.importer import Actor, import_layer
from tests.web.conftest import PASSWORD, csrf_from, login

_BOX = "MULTIPOLYGON((({x0} 31.20, {x1} 31.20, {x1} 31.21, {x0} 31.21, {x0} 31.20)))"
#: Community C3 (新华社区) in street S1: K1 350 and K2 400 households (in band), K3 800 (above).
C3_GRIDS = (("K1", "一网格", 121.460, 121.465, 350), ("K2", "二网格", 121.465, 121.470, 400),
            ("K3", "三网格", 121.470, 121.480, 800))


def seed_c3(engine) -> None:
    """Add community C3 with grids K1–K3 and their households (ids K1-0 …) to street S1."""
    rng = np.random.default_rng(16)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO communities (code, name, street_code, geom) VALUES "
                          "('C3', '新华社区', 'S1', ST_GeomFromText(:g, 4326))"), {"g": _BOX.format(x0=121.46, x1=121.48)})
        for code, name, x0, x1, _ in C3_GRIDS:
            c.execute(sa.text("INSERT INTO grids (grid_code, name, community_code, kind, has_branch, geom) VALUES "
                              "(:c, :n, 'C3', 'urban', true, ST_GeomFromText(:g, 4326))"),
                      {"c": code, "n": name, "g": _BOX.format(x0=x0, x1=x1)})
    frames = []
    for code, _, x0, x1, n in C3_GRIDS:
        xs, ys = rng.uniform(x0 + 0.0002, x1 - 0.0002, n), rng.uniform(31.2002, 31.2098, n)
        frames.append(gpd.GeoDataFrame({"household_id": [f"{code}-{i}" for i in range(n)], "grid_code": code},
                                       geometry=gpd.points_from_xy(xs, ys), crs="EPSG:4326"))
    import_layer(engine, "households", pd.concat(frames, ignore_index=True), actor=Actor(by="test"))


def counts(engine) -> dict:
    """Row counts and the grids' geometry of every table a redraw page may write."""
    with engine.connect() as c:
        out = {t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
               for t in ("grids", "households", "redraw_drafts", "job_progress", "audit_log")}
        out["geoms"] = c.execute(sa.text("SELECT string_agg(grid_code || ST_AsText(geom), ';' ORDER BY grid_code) "
                                         "FROM grids")).scalar_one()
        out["drafts"] = c.execute(sa.text("SELECT string_agg(md5(grids::text) || edit_pos, ';' ORDER BY draft_id) "
                                          "FROM redraw_drafts")).scalar_one()
    return out


def boundary_cell(engine, draft, into: str) -> str:
    """A cell with households touching grid ``into`` from a neighbouring (not locked) grid."""
    cells = uc.draft_cells(engine, draft)
    grids = draft["grids"].set_index("grid_code")
    free = set(grids.index[grids["status"] != "locked"]) - {into}
    near = cells[cells["grid_code"].isin(free) & (cells["households"] > 0)
                 & cells.geometry.intersects(grids.geometry[into].buffer(1e-5))]
    return str(near.sort_values("households")["cell"].iloc[0])


@pytest.fixture()
def c3(web_db):
    seed_c3(web_db)
    users.create_user(web_db, "planner2", PASSWORD, "planner", ["S2"])
    return web_db


@pytest.fixture()
def draft(c3):
    draft_id = uc.create_draft(c3, "C3", uc.DraftControls(locked=("K1", "K2")), name="方案一", created_by="planner1")
    return uc.open_draft(c3, draft_id, None)


def _csrf(client, path):
    return csrf_from(client.get(path).text)


def test_form_names_beside_codes_and_job_queued(client, c3):
    login(client, "planner1")
    page = client.get("/planner/redraw", params={"community": "C3"})
    assert page.status_code == 200 and "新华社区（C3）" in page.text and 'value="K1"' in page.text
    assert 'value="300"' in page.text and 'value="500"' in page.text  # the urban band by default
    r = client.post("/planner/redraw", data={"csrf_token": csrf_from(page.text), "community": "C3",
                                             "locked": ["K1", "K2"], "band_min": "300", "band_max": "500",
                                             "minimal_change": "on"})
    assert r.status_code == 303 and r.headers["location"].startswith("/planner/redraw/jobs/")
    job = client.get(r.headers["location"])
    assert job.status_code == 200 and "排队中" in job.text
    again = client.post("/planner/redraw", data={"csrf_token": csrf_from(page.text), "community": "C3"})
    assert again.status_code == 409 and "已有一个计算任务" in again.text


def test_other_street_gets_404_everywhere_and_nothing_changes(client, c3, draft):
    login(client, "planner2")
    token = _csrf(client, "/planner/redraw")
    before = counts(c3)
    d = draft["draft_id"]
    cell = boundary_cell(c3, draft, next(c for c in draft["grids"]["grid_code"] if c.startswith("C3")))
    hdr = {"X-CSRF-Token": token}
    for r in (client.get(f"/planner/drafts/{d}"), client.get(f"/planner/drafts/{d}/export.geojson"),
              client.get(f"/planner/drafts/{d}/changes.xlsx"), client.get(f"/drafts/{d}/grids.geojson"),
              client.get(f"/drafts/{d}/cells.geojson"),
              client.post(f"/drafts/{d}/edits", json={"to_grid": "K1", "cells": [cell]}, headers=hdr),
              client.post(f"/drafts/{d}/undo", headers=hdr),
              client.post(f"/planner/drafts/{d}/commit", data={"csrf_token": token}),
              client.post("/planner/redraw", data={"csrf_token": token, "community": "C3"})):
        assert r.status_code == 404, r.text
    assert client.get(f"/planner/drafts/{d + 999}").status_code == 404
    assert counts(c3) == before


def test_edit_undo_redo_via_routes_then_exports(client, c3, draft):
    login(client, "planner1")
    d = draft["draft_id"]
    page = client.get(f"/planner/drafts/{d}")
    assert page.status_code == 200 and "调整前（现状）" in page.text and "一网格（K1）" in page.text
    hdr = {"X-CSRF-Token": csrf_from(page.text)}
    into = next(c for c in draft["grids"]["grid_code"] if c.startswith("C3"))
    cell = boundary_cell(c3, draft, into)
    preview = client.post(f"/drafts/{d}/preview", json={"to_grid": into, "cells": [cell]}, headers=hdr).json()
    assert preview["households_moved"] > 0 and preview["grids"][0]["grid_code"] == into
    assert client.post(f"/drafts/{d}/edits", json={"to_grid": into, "cells": []}, headers=hdr).status_code == 422
    state = client.post(f"/drafts/{d}/edits", json={"to_grid": into, "cells": [cell]}, headers=hdr).json()
    assert state["edit_pos"] == 1 and state["edits"] == 1
    assert client.post(f"/drafts/{d}/undo", headers=hdr).json()["edit_pos"] == 0
    assert client.post(f"/drafts/{d}/undo", headers=hdr).status_code == 422  # nothing left to undo
    assert client.post(f"/drafts/{d}/redo", headers=hdr).json()["edit_pos"] == 1
    with c3.connect() as c:
        actions = [r[0] for r in c.execute(sa.text("SELECT action FROM audit_log WHERE action LIKE 'draft_%' "
                                                   "ORDER BY audit_id"))]
    assert actions == ["draft_edit", "draft_undo", "draft_redo"]

    fc = client.get(f"/planner/drafts/{d}/export.geojson").json()
    assert {f["properties"]["grid_code"] for f in fc["features"]} >= {"K1", "K2"}
    gpkg = client.get(f"/planner/drafts/{d}/export.gpkg")
    shp = zipfile.ZipFile(io.BytesIO(client.get(f"/planner/drafts/{d}/export.zip").content))
    assert gpkg.content[:16] == b"SQLite format 3\x00" and {"grids.shp", "grids.dbf", "grids.prj"} <= set(shp.namelist())
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(client.get(f"/planner/drafts/{d}/changes.xlsx").content))
    rows = list(book.active.values)
    assert rows[0][0] == "户编号" and len(rows) - 1 == len(uc.household_changes(
        uc.open_draft(c3, d, None), uc.todays_assignment(c3, "C3")))


def test_stale_commit_refused_in_chinese_and_nothing_written(client, c3, draft):
    login(client, "planner1")
    other = uc.open_draft(c3, uc.create_draft(c3, "C3", uc.DraftControls(locked=("K1", "K2")), name="方案二",
                                              created_by="planner1"), None)
    uc.commit_draft(c3, draft, Actor(by="test", role="planner"))
    page = client.get(f"/planner/drafts/{other['draft_id']}")
    before = counts(c3)
    r = client.post(f"/planner/drafts/{other['draft_id']}/commit", data={"csrf_token": csrf_from(page.text)})
    assert r.status_code == 409 and "网格已被他人修改，请重新生成" in r.text
    assert counts(c3) == before


def test_edits_touching_locked_grids_get_422_naming_them_and_nothing_changes(client, c3, draft):
    login(client, "planner1")
    d = draft["draft_id"]
    hdr = {"X-CSRF-Token": _csrf(client, f"/planner/drafts/{d}")}
    into = next(c for c in draft["grids"]["grid_code"] if c.startswith("C3"))
    cells = uc.draft_cells(c3, draft)
    k2 = cells.loc[(cells["grid_code"] == "K2") & (cells["households"] > 0), "cell"].iloc[0]
    free = boundary_cell(c3, draft, into)
    before = counts(c3)
    for path, body, name in (("/preview", {"to_grid": "K1", "cells": [free]}, "一网格（K1）"),
                             ("/edits", {"to_grid": "K1", "cells": [free]}, "一网格（K1）"),
                             ("/preview", {"to_grid": into, "cells": [k2, free]}, "二网格（K2）"),
                             ("/edits", {"to_grid": into, "cells": [k2]}, "二网格（K2）")):
        r = client.post(f"/drafts/{d}{path}", json=body, headers=hdr)
        assert r.status_code == 422 and name in r.json()["detail"] and "锁定" in r.json()["detail"], r.text
    assert counts(c3) == before
    fc = client.get(f"/drafts/{d}/cells.geojson").json()
    locked = {f["properties"]["grid_code"] for f in fc["features"] if f["properties"]["locked"]}
    assert locked == {"K1", "K2"} and all({"lon", "lat"} <= set(f["properties"]) for f in fc["features"])
    shown = client.post(f"/drafts/{d}/preview", json={"to_grid": into, "cells": [free]}, headers=hdr).json()
    assert shown["grids"][0]["name"].endswith(f"（{into}）") and shown["split_buildings"] == []
