"""Maps over HTTP: coverage and service maps, roles, the responder's own map, saved links only."""

from __future__ import annotations

import geopandas as gpd
import pytest
import sqlalchemy as sa

from maps_cases import layer_data


# --- HTTP ---------------------------------------------------------------------------------------

@pytest.fixture()
def stored(engine, small):
    """The small scenario in PostGIS, with one current link run; region = its community."""
    from geodata.store.importer import import_layer
    from gridmap.linkage import link_households

    comm = small["communities"].copy()
    comm["street_code"] = "S-TEST"
    grids = small["grids"].copy()
    grids["community_code"] = comm["code"].iloc[0]
    streets = gpd.GeoDataFrame({"code": ["S-TEST"], "name": ["测试街道"]}, geometry=[comm.union_all()], crs=4326)
    from geodata.io import normalise
    for layer, gdf in (("streets", streets), ("communities", comm), ("grids", grids),
                       ("households", small["households"]), ("members", small["members"]),
                       ("service_centres", small["service_centres"])):
        import_layer(engine, layer, normalise(gdf, layer) if layer in ("streets", "communities") else gdf)
    links = link_households(small["households"], small["members"], grids=small["grids"]).links
    with engine.begin() as c:
        run = c.execute(sa.text("INSERT INTO link_runs (region, is_current) VALUES (:r, true) RETURNING run_id"),
                        {"r": comm["code"].iloc[0]}).scalar()
        c.execute(sa.text("INSERT INTO links (run_id, household_id, member_id, distance_m, visit_order) "
                          "VALUES (:run, :h, :m, :d, :o)"),
                  [{"run": run, "h": h, "m": m, "d": float(d), "o": int(o)} for h, m, d, o in
                   links[["household_id", "member_id", "distance_m", "visit_order"]].itertuples(index=False)])
    return {"engine": engine, "community": comm["code"].iloc[0], "links": links}


@pytest.fixture()
def client(db_url, engine):
    from fastapi.testclient import TestClient

    from api.app import create_app

    return TestClient(create_app(db_url))


def _token(engine, role, regions, member=None):
    from geodata.store import auth as store

    _, tok = store.create_token(engine, role, list(regions), member_id=member)
    return {"Authorization": f"Bearer {tok}"}


@pytest.mark.db
def test_http_coverage_and_service_maps(client, stored, small):
    h = _token(stored["engine"], "leader", [stored["community"]])
    r = client.get("/maps/coverage", params={"region": stored["community"], "tiles": "none"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    fcs = layer_data(r.text)
    assert len(fcs[0]["features"]) == len(small["grids"])
    assert "联户覆盖率" in r.text
    r = client.get("/maps/service", params={"region": "S-TEST", "tiles": "amap"}, headers=h)
    assert r.status_code == 404  # the street is above the token's community: the same 404 as a missing one
    r = client.get("/maps/service", params={"region": stored["community"], "tiles": "amap"}, headers=h)
    assert r.status_code == 200 and "autonavi" in r.text
    r = client.get("/maps/coverage", params={"region": stored["community"]})
    assert r.status_code == 401


@pytest.mark.db
def test_http_roles_and_the_responders_own_map(client, stored, small):
    eng, comm, links = stored["engine"], stored["community"], stored["links"]
    viewer = _token(eng, "viewer", [comm])
    assert client.get("/maps/coverage", params={"region": comm}, headers=viewer).status_code == 200
    assert client.get("/maps/links", params={"region": comm, "grid": links["grid_code"].iloc[0]},
                      headers=viewer).status_code == 403
    member = links["member_id"].value_counts().index[0]
    own = set(links.loc[links["member_id"] == member, "household_id"])
    resp = _token(eng, "responder", [comm], member=member)
    r = client.get("/maps/links", params={"region": comm, "tiles": "none"}, headers=resp)
    assert r.status_code == 200, r.text
    assert all(hid in r.text for hid in own)
    assert not any(hid in r.text for hid in set(small["households"]["household_id"]) - own)
    name = small["households"].set_index("household_id").loc[sorted(own)[0], "name"]
    assert name in r.text  # their own households, names shown …
    with eng.connect() as c:  # … and the read audited (ids only)
        ids = c.execute(sa.text("SELECT ids FROM audit_log WHERE action = 'pii_read' ORDER BY audit_id DESC LIMIT 1"))\
            .scalar()
    assert set(ids) == own
    other = next(m for m in links["member_id"].unique() if m != member)
    assert client.get("/maps/links", params={"region": comm, "member": other}, headers=resp).status_code == 403
    leader = _token(eng, "leader", [comm])
    r = client.get("/maps/links", params={"region": comm, "grid": links["grid_code"].iloc[0], "tiles": "none"},
                   headers=leader)
    assert r.status_code == 200 and name not in r.text  # others see names masked
    assert client.get("/maps/redraw", params={"region": comm}, headers=resp).status_code == 403
    assert client.get("/maps/coverage", params={"region": "NOWHERE"},
                      headers=_token(eng, "admin", ["*"])).status_code == 404


@pytest.mark.db
def test_http_links_map_draws_only_saved_links(client, engine, small):
    # a region with households and members but no saved 包片联户 run: no engine may run inside the GET
    from geodata.store.importer import import_layer

    comm = small["communities"]["code"].iloc[0]
    grids = small["grids"].copy()
    grids["community_code"] = comm
    for layer, gdf in (("grids", grids), ("households", small["households"]), ("members", small["members"])):
        import_layer(engine, layer, gdf)

    def counts():
        with engine.connect() as c:
            return [c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in ("link_runs", "links")]

    before = counts()
    h = _token(engine, "leader", [grids["grid_code"].iloc[0]])
    r = client.get("/maps/links", params={"region": grids["grid_code"].iloc[0], "grid": grids["grid_code"].iloc[0],
                                          "tiles": "none"}, headers=h)
    assert r.status_code == 409, r.text
    assert "recompute links first" in r.json()["detail"] and "包片联户" in r.json()["detail"]
    assert counts() == before == [0, 0]
