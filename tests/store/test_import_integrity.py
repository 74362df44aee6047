"""Issue 11, findings 5 and 7: imports place things, keep grid codes true and never erase.

Two grids side by side (G1 west, G2 east, each ~960 m wide) in one community, on a real PostGIS.
Every refused import is checked to leave every table (audit log included) and every grid polygon
as it was.
"""

import geopandas as gpd
import pytest
import sqlalchemy as sa
from shapely.geometry import MultiPolygon, Point, box
from typer.testing import CliRunner

from geodata.errors import InputError
from geodata.store.importer import Actor, import_layer

G1 = box(120.10, 30.20, 120.11, 30.21)
G2 = box(120.11, 30.20, 120.12, 30.21)
M_PER_DEG_LON = 96_200  # at latitude 30.2°, metres per degree of longitude (for placing test points)


def _grids(g1=G1, g2=G2, community=True):
    cols = {"grid_code": ["G1", "G2"], "name": ["一网格", "二网格"]}
    if community:
        cols["community_code"] = ["C1", "C1"]
    return gpd.GeoDataFrame(cols, geometry=[MultiPolygon([g1]), MultiPolygon([g2])], crs="EPSG:4326")


def _households(rows):
    """rows: (household_id, lon, lat, grid_code) — grid_code None for blank."""
    return gpd.GeoDataFrame({"household_id": [r[0] for r in rows], "grid_code": [r[3] for r in rows]},
                            geometry=[Point(r[1], r[2]) for r in rows], crs="EPSG:4326")


def _counts(engine):
    with engine.connect() as c:
        names = [r[0] for r in c.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename NOT IN ('spatial_ref_sys')"))]
        counts = {n: c.execute(sa.text(f'SELECT count(*) FROM "{n}"')).scalar_one() for n in sorted(names)}
        counts["grid_geoms"] = c.execute(sa.text("SELECT md5(string_agg(ST_AsEWKB(geom)::text, ',' ORDER BY grid_code)) "
                                                 "FROM grids")).scalar_one()
    return counts


@pytest.fixture()
def town(engine):
    outline = MultiPolygon([box(120.10, 30.20, 120.12, 30.21)])
    import_layer(engine, "streets", gpd.GeoDataFrame({"code": ["S1"]}, geometry=[outline], crs="EPSG:4326"))
    import_layer(engine, "communities", gpd.GeoDataFrame({"code": ["C1"], "street_code": ["S1"]}, geometry=[outline],
                                                         crs="EPSG:4326"))
    import_layer(engine, "grids", _grids())
    return engine


def _write_csv(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# --- finding 5: a grid_code must be true ---------------------------------------------------------

def test_validate_grids_refuses_grid_code_naming_no_grid_or_a_far_grid(tmp_path):
    from api.cli import app
    from geodata.io import write_layer

    grids = write_layer(_grids(), tmp_path / "grids.geojson")
    west_20m = 120.10 - 20 / M_PER_DEG_LON
    hh = _write_csv(tmp_path / "hh.csv", "household_id,grid_code,lon,lat\n"
                    "H1,G1,120.105,30.205\n"
                    "H2,NOPE-1,120.105,30.205\n"
                    "H3,G1,120.115,30.205\n"
                    f"H4,G1,{west_20m},30.205\n")
    r = CliRunner().invoke(app, ["validate", "households", str(hh), "--grids", str(grids)])
    assert isinstance(r.exception, InputError), r.output
    msg = str(r.exception)
    assert "hh.csv, Excel row 3, data row 2, column grid_code: household H2: grid_code 'NOPE-1' names no grid; " \
           "it lies in grid G1" in msg
    assert "Excel row 4, data row 3, column grid_code: household H3: lies 482 m outside grid G1" in msg
    assert "data row 1" not in msg and "data row 4" not in msg  # 20 m outside its grid is within 50 m
    out = tmp_path / "fixed.geojson"
    r = CliRunner().invoke(app, ["validate", "households", str(hh), "--grids", str(grids), "--fix", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "re-derived" in r.output
    assert list(gpd.read_file(out)["grid_code"]) == ["G1", "G1", "G2", "G1"]


def test_import_refuses_grid_code_naming_no_grid_and_changes_nothing(town, db_url, tmp_path, monkeypatch):
    from api.cli import app

    monkeypatch.setenv("GRIDMAP_DATABASE_URL", db_url)
    before = _counts(town)
    hh = _write_csv(tmp_path / "hh.csv", "household_id,grid_code,lon,lat\nH1,G1,120.105,30.205\nH2,NOPE-1,120.105,30.205\n")
    r = CliRunner().invoke(app, ["import", "households", str(hh)])
    assert isinstance(r.exception, InputError)
    assert "Excel row 3, data row 2, column grid_code: household H2: grid_code 'NOPE-1' names no grid" in str(r.exception)
    assert _counts(town) == before


def test_reimport_of_old_file_after_grids_changed_leaves_no_row_outside_its_grid(town):
    old = _households([("H1", 120.105, 30.205, "G1"), ("H2", 120.108, 30.205, "G1"), ("H3", 120.115, 30.205, "G2")])
    import_layer(town, "households", old)
    import_layer(town, "grids", _grids(box(120.10, 30.20, 120.106, 30.21), box(120.106, 30.20, 120.12, 30.21)))
    before = _counts(town)
    with pytest.raises(InputError, match=r"row 2, column grid_code: household H2: lies 193 m outside grid G1 .*"
                                         r"it lies in grid G2"):
        import_layer(town, "households", old)
    assert _counts(town) == before
    r = import_layer(town, "households", old, fix=True)
    assert r.updated == 1 and any("re-derived" in n for n in r.notes)
    with town.connect() as c:
        outside = c.execute(sa.text("SELECT count(*) FROM households h LEFT JOIN grids g USING (grid_code) "
                                    "WHERE g.geom IS NULL OR NOT ST_DWithin(h.geom::geography, g.geom::geography, 50)"))
        assert outside.scalar_one() == 0


# --- finding 7: imports place things and never erase ---------------------------------------------

def test_roster_with_coordinates_only_gets_grids_from_the_polygons(town):
    east_30m = 120.12 + 30 / M_PER_DEG_LON
    hh = _households([("H1", 120.105, 30.205, None), ("H2", 120.115, 30.205, None), ("H3", east_30m, 30.205, None),
                      ("H4", 120.2, 30.205, None)]).drop(columns="grid_code")
    r = import_layer(town, "households", hh)
    assert r.derived == 3
    assert any("3 of 4 households without grid_code placed" in n and "1 lie in no grid" in n for n in r.notes)
    with town.connect() as c:
        got = dict(c.execute(sa.text("SELECT household_id, grid_code FROM households")).all())
    assert got == {"H1": "G1", "H2": "G2", "H3": "G2", "H4": None}


def test_grids_without_community_code_get_it_from_the_community_polygon(engine):
    comms = gpd.GeoDataFrame({"code": ["C1", "C2"]}, geometry=[MultiPolygon([box(120.10, 30.20, 120.1102, 30.21)]),
                                                              MultiPolygon([box(120.1102, 30.20, 120.13, 30.21)])],
                             crs="EPSG:4326")
    import_layer(engine, "communities", comms)
    r = import_layer(engine, "grids", _grids(community=False))
    assert r.derived == 2 and any("2 of 2 grids without community_code" in n for n in r.notes)
    with engine.connect() as c:
        got = dict(c.execute(sa.text("SELECT grid_code, community_code FROM grids")).all())
    assert got == {"G1": "C1", "G2": "C2"}  # G1 pokes 20 m into C2: the larger overlap wins


def test_upsert_writes_only_the_columns_the_file_has(town):
    full = _households([("H1", 120.105, 30.205, "G1"), ("H2", 120.115, 30.205, "G2")])
    full["name"], full["phone"], full["size"] = ["张三", "李四"], ["13812345678", "13987654321"], [3, 2]
    import_layer(town, "households", full)
    slim = full[["household_id", "grid_code", "geometry"]].copy()
    slim.loc[1, "grid_code"] = None  # blank: derived again from the polygon, not erased
    r = import_layer(town, "households", slim)
    assert (r.inserted, r.updated, r.unchanged) == (0, 0, 2)
    with town.connect() as c:
        rows = {h: (n, p, s, g) for h, n, p, s, g in c.execute(sa.text(
            "SELECT household_id, name, phone, size, grid_code FROM households"))}
    assert rows == {"H1": ("张三", "13812345678", 3, "G1"), "H2": ("李四", "13987654321", 2, "G2")}


def test_replace_grids_that_households_point_at_is_refused_with_counts(town):
    import_layer(town, "households", _households([("H1", 120.105, 30.205, "G1"), ("H2", 120.115, 30.205, "G2")]))
    before = _counts(town)
    merged = gpd.GeoDataFrame({"grid_code": ["G1"], "community_code": ["C1"]},
                              geometry=[MultiPolygon([box(120.10, 30.20, 120.12, 30.21)])], crs="EPSG:4326")
    with pytest.raises(InputError, match=r"would remove 1 grid\(s\) \(G2\) that 1 households and 0 members .*"
                                         r"gridmap redraw --commit"):
        import_layer(town, "grids", merged, replace=True)
    assert _counts(town) == before


# --- audited imports -----------------------------------------------------------------------------

def test_each_import_writes_one_audit_row_in_its_transaction(town):
    hh = _households([("H1", 120.105, 30.205, "G1"), ("H2", 120.115, 30.205, None)])
    with town.connect() as c:
        n0 = c.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()
    from geodata.store.auth import create_token

    rec, _ = create_token(town, "planner", ["C1"])
    import_layer(town, "households", hh, actor=Actor(by=f"token:{rec.token_id}", token_id=rec.token_id, role="planner"))
    with pytest.raises(InputError):
        import_layer(town, "households", _households([("H3", 120.105, 30.205, "NOPE-1")]))
    with town.connect() as c:
        rows = c.execute(sa.text("SELECT action, what, token_id, role, ids, detail FROM audit_log ORDER BY audit_id")).all()
    assert len(rows) == n0 + 1  # the refused import left no row
    action, what, token_id, role, ids, detail = rows[-1]
    assert (action, what, token_id, role, sorted(ids)) == ("import", "households", rec.token_id, "planner", ["H1", "H2"])
    assert detail["by"] == f"token:{rec.token_id}"
    assert (detail["inserted"], detail["updated"], detail["unchanged"], detail["derived"]) == (2, 0, 0, 1)


def test_cli_import_is_audited_with_the_os_user(town, db_url, tmp_path, monkeypatch):
    import getpass

    from api.cli import app

    monkeypatch.setenv("GRIDMAP_DATABASE_URL", db_url)
    hh = _write_csv(tmp_path / "hh.csv", "household_id,lon,lat\nH1,120.105,30.205\n")
    r = CliRunner().invoke(app, ["import", "households", str(hh)])
    assert r.exit_code == 0, r.output
    assert "1 inserted" in r.output and "1 derived" in r.output
    with town.connect() as c:
        detail = c.execute(sa.text("SELECT detail FROM audit_log WHERE action = 'import' AND what = 'households'")).scalar_one()
    assert detail["by"] == f"os:{getpass.getuser()}"
