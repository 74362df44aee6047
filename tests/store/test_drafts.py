"""Redraw drafts on a real PostGIS: locked grids stay exactly as they were, figures equal the domain's,
a draft commits through commit_redraw (every household in a grid containing it) and goes stale after."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from api.usecases.drafts import (
    DraftControls,
    commit_draft,
    compare_drafts,
    compute_draft,
    create_draft,
    open_draft,
)
from geodata.store.drafts import community_inputs
from geodata.store.grids import EditRefused
from geodata.store.importer import Actor, import_layer
from gridmap.districting import redraw

BOX = "MULTIPOLYGON((({x0} 31.20, {x1} 31.20, {x1} 31.21, {x0} 31.21, {x0} 31.20)))"


@pytest.fixture()
def community(engine):
    """Community C1 with grid A (west, 700 households: above the band) and B (east, 350: in band)."""
    rng = np.random.default_rng(7)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO streets (code, name, geom) VALUES ('S1', '外滩街道', ST_GeomFromText(:g, 4326))"),
                  {"g": BOX.format(x0=121.48, x1=121.50)})
        c.execute(sa.text("INSERT INTO communities (code, name, street_code, geom) VALUES "
                          "('C1', '中山社区', 'S1', ST_GeomFromText(:g, 4326))"), {"g": BOX.format(x0=121.48, x1=121.50)})
        c.execute(sa.text("INSERT INTO grids (grid_code, name, community_code, kind, has_branch, geom) VALUES "
                          "('A', '甲网格', 'C1', 'urban', true, ST_GeomFromText(:a, 4326)), "
                          "('B', '乙网格', 'C1', 'urban', true, ST_GeomFromText(:b, 4326))"),
                  {"a": BOX.format(x0=121.48, x1=121.49), "b": BOX.format(x0=121.49, x1=121.50)})
    frames = []
    for code, x0, n in (("A", 121.48, 700), ("B", 121.49, 350)):
        xs, ys = rng.uniform(x0 + 0.0002, x0 + 0.0098, n), rng.uniform(31.2002, 31.2098, n)
        frames.append(gpd.GeoDataFrame({"household_id": [f"{code}-{i}" for i in range(n)], "grid_code": code},
                                       geometry=gpd.points_from_xy(xs, ys), crs="EPSG:4326"))
    import_layer(engine, "households", pd.concat(frames, ignore_index=True), actor=Actor(by="test"))
    return engine


def test_draft_figures_equal_the_domains(community):
    inputs = community_inputs(community, "C1")
    grids, assignment = compute_draft(inputs, DraftControls())
    domain = redraw(inputs["communities"].rename(columns={"name": "community_name"}), inputs["households"],
                    current=inputs["grids"])
    draft_id = create_draft(community, "C1", DraftControls(), name="方案一", created_by="test")
    draft = open_draft(community, draft_id, frozenset({"C1"}))
    s = draft["summary"]
    assert s["mean_polsby_popper"] == pytest.approx(domain.summary["mean_polsby_popper"], rel=1e-9)
    assert s["in_band_pct"] == pytest.approx(domain.summary["in_band_pct"])
    assert s["moved"] == domain.summary["moved"] and s["households"] == 1050
    assert len(draft["grids"]) == len(grids) and len(draft["assignment"]) == len(assignment)
    with pytest.raises(LookupError):
        open_draft(community, draft_id, frozenset({"C9"}))  # another community's planner: as if missing


def test_locked_grid_unchanged_then_commit_files_every_household_and_goes_stale(community):
    with community.connect() as c:
        b_before = c.execute(sa.text("SELECT ST_AsBinary(geom) FROM grids WHERE grid_code = 'B'")).scalar_one()
    draft_id = create_draft(community, "C1", DraftControls(locked=("B",)), name="锁定乙", created_by="test")
    draft = open_draft(community, draft_id, None)
    locked = draft["grids"][draft["grids"]["grid_code"] == "B"]
    assert len(locked) == 1 and locked["status"].iloc[0] == "locked" and locked["households"].iloc[0] == 350
    assert all(v == "B" for k, v in draft["assignment"].items() if k.startswith("B-"))
    other = open_draft(community, create_draft(community, "C1", DraftControls(locked=("B",)), name="再算一次",
                                               created_by="test"), None)
    assert compare_drafts(draft, other)["moved_between"] == 0  # same controls, same seed: the same plan

    commit_draft(community, draft, Actor(by="test", role="planner"))
    with community.connect() as c:
        assert c.execute(sa.text("SELECT ST_AsBinary(geom) FROM grids WHERE grid_code = 'B'")).scalar_one() == b_before
        outside = c.execute(sa.text("SELECT count(*) FROM households h LEFT JOIN grids g ON g.grid_code = h.grid_code "
                                    "WHERE g.grid_code IS NULL OR NOT ST_Covers(g.geom, h.geom)")).scalar_one()
        bands = c.execute(sa.text("SELECT grid_code, count(*) FROM households GROUP BY grid_code")).all()
    assert outside == 0
    assert all(300 <= n <= 500 for code, n in bands if code != "B"), bands
    with pytest.raises(EditRefused) as refused:
        commit_draft(community, other, Actor(by="test", role="planner"))  # computed on the old versions
    assert refused.value.reason == "stale"


def test_redraw_map_draws_a_saved_draft_and_never_runs_the_engine(community, db_url):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from geodata.store import auth as auth_store

    _, token = auth_store.create_token(community, "planner", ["C1"])
    _, elsewhere = auth_store.create_token(community, "planner", ["NOWHERE"])
    h = {"Authorization": f"Bearer {token}"}
    client = TestClient(create_app(db_url))

    def drafts():
        with community.connect() as c:
            return c.execute(sa.text("SELECT count(*) FROM redraw_drafts")).scalar_one()

    r = client.get("/maps/redraw", params={"region": "C1", "tiles": "none"}, headers=h)
    assert r.status_code == 409 and "draft" in r.json()["detail"] and drafts() == 0
    draft_id = create_draft(community, "C1", DraftControls(locked=("B",)), name="方案", created_by="test")
    r = client.get("/maps/redraw", params={"region": "C1", "tiles": "none", "draft": draft_id}, headers=h)
    assert r.status_code == 200 and "C1-01" in r.text
    r = client.get("/maps/redraw", params={"region": "C1", "tiles": "none", "draft": draft_id + 99}, headers=h)
    assert r.status_code == 404
    other = {"Authorization": f"Bearer {elsewhere}"}
    r = client.get("/maps/redraw", params={"region": "C1", "tiles": "none", "draft": draft_id}, headers=other)
    assert r.status_code == 404
