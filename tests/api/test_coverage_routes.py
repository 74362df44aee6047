"""Coverage figures and gaps over HTTP, role and region checked."""

from __future__ import annotations

import pandas as pd
import pytest

from gridmap.coverage import (
    grid_status,
    straight_line_coverage,
)
from gridmap.metric import haversine_m


# --- HTTP API on the PostGIS store ---------------------------------------------------------------

@pytest.fixture()
def api_store(engine, scenario, hangzhou):
    """The scenario of street SQ (and its neighbours' centres) imported into a fresh store."""
    from geodata.io import read_layer
    from geodata.store.importer import import_layer

    streets = read_layer(hangzhou / "streets.geojson", "streets", fix=True)
    comms = read_layer(hangzhou / "communities.geojson", "communities", fix=True)
    grids = scenario["grids"].copy()
    grids["community_code"] = grids["grid_code"].str.rsplit("-", n=1).str[0]
    sq = grids["grid_code"].str.startswith("SQ-")
    hh = scenario["households"]
    hh = hh[hh["grid_code"].isin(set(grids.loc[sq, "grid_code"]))]
    mm = scenario["members"]
    mm = mm[mm["grid_code"].isin(set(grids.loc[sq, "grid_code"]))]
    import_layer(engine, "streets", streets)
    import_layer(engine, "communities", comms)
    import_layer(engine, "grids", grids)
    import_layer(engine, "households", hh)
    import_layer(engine, "members", mm)
    import_layer(engine, "service_centres", scenario["centres"])
    return {"grids": grids[sq], "households": hh, "members": mm, "centres": scenario["centres"]}


@pytest.fixture()
def client(db_url, engine):
    from fastapi.testclient import TestClient

    from api.app import create_app

    return TestClient(create_app(db_url))


def _token(engine, role="leader", regions=("*",)):
    from geodata.store import auth

    _, tok = auth.create_token(engine, role, list(regions))
    return {"Authorization": f"Bearer {tok}"}


@pytest.mark.db
def test_coverage_route_figures(client, engine, api_store):
    r = client.get("/coverage", params={"region": "SQ"}, headers=_token(engine, "viewer", ["SQ"]))
    assert r.status_code == 200, r.text
    body = r.json()
    want = grid_status(api_store["grids"], api_store["households"], api_store["members"]).set_index("grid_code")
    got = {g["grid_code"]: g for g in body["grids"]}
    assert set(got) == set(want.index)
    for code, g in got.items():
        assert g["households"] == want.loc[code, "households"]
        assert g["members"] == want.loc[code, "members"]
        assert g["blank_reason"] == want.loc[code, "blank_reason"]
        assert g["linked_households"] == want.loc[code, "linked_households"]
    assert body["summary"]["blank_grids"] == int(want["blank"].sum())
    assert sum(c["households"] for c in body["communities"]) == len(api_store["households"])
    assert [s["street_code"] for s in body["streets"]] == ["SQ"]
    hh = api_store["households"]
    cov = straight_line_coverage(hh, api_store["centres"])
    assert body["streets"][0]["covered_straight"] == int(cov["covered"].sum())


@pytest.mark.db
def test_gaps_route_geojson(client, engine, api_store):
    r = client.get("/gaps", params={"region": "SQ", "gap_res": 10}, headers=_token(engine))
    assert r.status_code == 200, r.text
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    layers = pd.Series([f["properties"]["layer"] for f in fc["features"]])
    blank = {f["properties"]["grid_code"]: f["properties"]["blank_reason"] for f in fc["features"]
             if f["properties"]["layer"] == "blank_grid"}
    st = grid_status(api_store["grids"], api_store["households"], api_store["members"])
    assert blank == st[st["blank"]].set_index("grid_code")["blank_reason"].to_dict()
    hh = api_store["households"]
    # brute force: every centre (those beyond the 1,500 m margin cannot reach a household within 1,000 m)
    c = api_store["centres"]
    d = haversine_m(hh.geometry.x.to_numpy()[:, None], hh.geometry.y.to_numpy()[:, None],
                    c.geometry.x.to_numpy()[None], c.geometry.y.to_numpy()[None])
    outside = int((d.min(axis=1) > 1000.0).sum())
    assert sum(f["properties"]["households"] for f in fc["features"] if f["properties"]["layer"] == "gap_cell") == outside
    unl = sum(f["properties"]["households"] for f in fc["features"] if f["properties"]["layer"] == "unlinked_cell")
    assert unl == int(st["unlinked_households"].sum())
    assert "name" not in str(fc["features"][-1]["properties"])  # no personal data
    assert layers.isin(["blank_grid", "gap_cell", "unlinked_cell"]).all()


@pytest.mark.db
def test_coverage_routes_refuse_other_regions_and_unknown(client, engine, api_store):
    h = _token(engine, "leader", ["DX"])
    assert client.get("/coverage", params={"region": "SQ"}, headers=h).status_code == 404
    assert client.get("/gaps", params={"region": "SQ"}, headers=h).status_code == 404
    assert client.get("/coverage", params={"region": "SQ"}).status_code == 401
    assert client.get("/coverage", params={"region": "NOPE"}, headers=_token(engine)).status_code == 404
