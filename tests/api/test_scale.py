"""The plan on a Dask LocalCluster, one task per street, against the single-machine plan.

Scenario: households, members and centres synthesised inside the real grids of three neighbouring
Hangzhou streets (长庆 CQ, 天水 TS, 武林 WH), so street borders, border gap cells and centres that
serve across a border are real.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest

from tests.conftest import HANGZHOU

STREETS = ("CQ", "TS", "WH")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    """A scenario folder: real grids and streets of three streets, synthetic people (seed 7)."""
    from geodata.io import read_layer
    from geodata.parquet import _grid_streets
    from geodata.synth import synth_in_grids

    folder = tmp_path_factory.mktemp("scale") / "scenario"
    folder.mkdir()
    streets = gpd.read_file(HANGZHOU / "streets.geojson")
    (streets[streets["code"].isin(STREETS)]).to_file(folder / "streets.geojson")
    layers = {"grids": read_layer(HANGZHOU / "grids.geojson", "grids", fix=True),
              "streets": read_layer(HANGZHOU / "streets.geojson", "streets")}
    grids = layers["grids"][_grid_streets(layers).isin(STREETS).to_numpy()]
    synth = synth_in_grids(grids, seed=7, households_per_grid=(120, 200), centres_per_grid=1 / 15)
    for name, gdf in synth.items():
        gdf.to_file(folder / f"{name}.geojson")
    return folder


@pytest.fixture(scope="module")
def runs(scenario, tmp_path_factory):
    """The same scenario planned on one machine and on a LocalCluster of 2 processes (no maps)."""
    from api.usecases.plan import PlanOptions, run_plan
    from api.usecases.scale import run_plan_cluster

    out = tmp_path_factory.mktemp("runs")
    single = run_plan(PlanOptions(scenario=scenario, outdir=out / "single", maps=False))
    progress = []
    cluster = run_plan_cluster(PlanOptions(scenario=scenario, outdir=out / "cluster", maps=False), "local:2",
                               on_progress=lambda done, total, street: progress.append((done, total, street)))
    return single, cluster, progress


def _cluster_layer(result, name: str) -> gpd.GeoDataFrame:
    from geodata.parquet import read_partitioned

    if name == "gap_cells":  # merged on the reduce task: one file
        return gpd.read_parquet(result.layers_dir / name)
    return read_partitioned(result.layers_dir / name)


def test_export_puts_every_row_in_one_street(scenario, tmp_path):
    from geodata.parquet import export_parquet, read_meta
    from geodata.scenario import load_scenario

    layers = load_scenario(scenario)
    meta = export_parquet(layers, tmp_path / "pq")
    assert meta["streets"] == sorted(STREETS)
    assert read_meta(tmp_path / "pq")["halo_m"] == 1000.0
    for name in ("grids", "households", "members", "service_centres"):
        assert sum(meta["counts"][name].values()) == len(layers[name])
        files = list((tmp_path / "pq" / name).glob("street=*/part-0.parquet"))
        ids = pd.concat([gpd.read_parquet(f) for f in files]).iloc[:, 0]
        assert ids.is_unique and len(ids) == len(layers[name])


def test_halo_brings_the_neighbours_centres(scenario, tmp_path):
    """Without the halo some households near a border would lose the centre that covers them."""
    from geodata.parquet import export_parquet, read_street
    from geodata.scenario import load_scenario
    from gridmap.coverage import straight_line_coverage

    layers = load_scenario(scenario)
    meta = export_parquet(layers, tmp_path / "pq")
    lost = 0
    for street in meta["streets"]:
        own_layers, own = read_street(tmp_path / "pq", street)
        hh = own_layers["households"]
        centres = own_layers["service_centres"]
        with_halo = straight_line_coverage(hh, centres)["covered"]
        everywhere = straight_line_coverage(hh, layers["service_centres"])["covered"]
        assert (with_halo.to_numpy() == everywhere.to_numpy()).all()
        own_only = straight_line_coverage(hh, centres[centres["centre_id"].astype(str).isin(own)])["covered"]
        lost += int(with_halo.sum() - own_only.sum())
    assert lost > 0  # the scenario really has households served across a street border


def test_cluster_plan_equals_single_machine(runs):
    single, cluster, progress = runs
    assert cluster.failed == {}
    assert cluster.summary["streets"] == {"total": 3, "done": 3, "failed": {}}
    assert [p[:2] for p in progress] == [(1, 3), (2, 3), (3, 3)]
    assert sorted(p[2] for p in progress) == sorted(STREETS)
    assert cluster.summary["cluster"]["workers"] == 2
    for part in ("grids", "links", "gaps"):
        assert cluster.summary[part] == single.summary[part], part
    assert cluster.summary["table"] == {k: [tuple(r) for r in v] for k, v in single.summary["table"].items()}


def test_cluster_links_and_statuses_equal_single_machine(runs):
    single, cluster, _ = runs
    cols = ["household_id", "member_id", "visit_order", "grid_code", "member_grid_code", "cross_grid"]
    a = single.layers_out["links"].sort_values("household_id").reset_index(drop=True)
    b = _cluster_layer(cluster, "links").sort_values("household_id").reset_index(drop=True)
    assert len(a) == len(b) > 1000
    pd.testing.assert_frame_equal(a[cols], b[cols], check_dtype=False)
    assert (a["distance_m"] - b["distance_m"]).abs().max() < 1e-6  # metres
    status_cols = ["grid_code", "households", "members", "status", "blank", "linked_households", "members_needed",
                   "covered_straight"]
    sa = single.layers_out["grid_status"].sort_values("grid_code").reset_index(drop=True)
    sb = _cluster_layer(cluster, "grid_status").sort_values("grid_code").reset_index(drop=True)
    pd.testing.assert_frame_equal(sa[status_cols], sb[status_cols], check_dtype=False)
    ua = single.layers_out["unlinked_households"].sort_values("household_id")
    ub = _cluster_layer(cluster, "unlinked_households").sort_values("household_id")
    assert ua["household_id"].tolist() == ub["household_id"].tolist()
    assert ua["reason"].tolist() == ub["reason"].tolist()


def test_gap_cells_merged_across_streets(runs):
    single, cluster, _ = runs
    cols = ["h3", "households", "gap_id", "gap_households"]
    a = single.layers_out["gap_cells"][cols].sort_values("h3").reset_index(drop=True)
    b = _cluster_layer(cluster, "gap_cells")[cols].sort_values("h3").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    areas = _cluster_layer(cluster, "service_areas")
    assert sorted(areas["centre_id"]) == sorted(single.layers_out["service_areas"]["centre_id"])


def test_failed_street_is_named_and_others_kept(scenario, tmp_path):
    """A street whose data cannot be read fails twice (one retry) and is named; the rest is planned."""
    from api.usecases.plan import PlanOptions
    from api.usecases.scale import export_scenario, run_plan_cluster

    root = tmp_path / "pq"
    export_scenario(scenario, root)
    (root / "households" / "street=TS" / "part-0.parquet").write_bytes(b"not parquet")
    result = run_plan_cluster(PlanOptions(scenario=root, outdir=tmp_path / "out", maps=False), "local:1")
    assert list(result.failed) == ["TS"]
    assert result.summary["streets"]["done"] == 2
    done = _cluster_layer(result, "grid_status")
    assert set(done["street"]) == {"CQ", "WH"}
    assert result.summary["grids"]["total"] == len(done)
    assert (tmp_path / "out" / "summary.json").is_file()


def test_cluster_spec_is_checked():
    from api.usecases.scale import connect

    for bad in ("local:0", "local:x", "http://host:8786", "8786"):
        with pytest.raises(ValueError, match="--cluster"):
            connect(bad)


@pytest.mark.db
def test_export_from_postgis_equals_export_from_files(scenario, engine, tmp_path):
    """The store holds the same scenario: its export has the same rows per street, and no personal data."""
    from geodata.parquet import export_parquet, read_partitioned
    from geodata.parquet_store import export_store
    from geodata.scenario import load_scenario
    from geodata.store.importer import import_layer

    layers = load_scenario(scenario)
    for name in ("streets", "grids", "households", "members", "service_centres"):
        import_layer(engine, name, layers[name])
    from_files = export_parquet(layers, tmp_path / "files")
    from_db = export_store(engine, tmp_path / "db")
    for name in ("grids", "households", "members", "service_centres"):
        assert from_db["counts"][name] == from_files["counts"][name], name
    households = read_partitioned(tmp_path / "db" / "households")
    assert not {"name", "phone", "id_number"} & set(households.columns)
    assert set(households["street"]) == set(STREETS)  # codes come back as text, not numbers


def test_cli_export_then_plan_on_cluster(scenario, tmp_path):
    """``gridmap export --parquet`` then ``gridmap plan PARQUET --cluster local:1 --no-maps``; a bad spec is refused."""
    import json

    from typer.testing import CliRunner

    from api.cli import app

    r = CliRunner().invoke(app, ["export", str(scenario), "--parquet", str(tmp_path / "pq")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "pq" / "households" / "street=CQ" / "part-0.parquet").is_file()
    r = CliRunner().invoke(app, ["plan", str(tmp_path / "pq"), "--out", str(tmp_path / "out"), "--cluster", "local:1",
                                 "--no-maps"])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["streets"] == {"total": 3, "done": 3, "failed": {}}
    assert not (tmp_path / "out" / "streets").exists()  # --no-maps: no per-street maps
    r = CliRunner().invoke(app, ["plan", str(tmp_path / "pq"), "--out", str(tmp_path / "bad"), "--cluster", "lokal:2"])
    assert r.exit_code != 0 and "--cluster" in r.output


def _store_with_communities(engine, scenario, folder: Path) -> dict:
    """The scenario in the store with its communities, so every grid, household and member has a street."""
    import shapely

    from geodata.io import read_layer
    from geodata.scenario import load_scenario
    from geodata.store.importer import import_layer

    layers = load_scenario(scenario)
    comms = gpd.read_file(HANGZHOU / "communities.geojson")
    comms = comms[comms["street_code"].isin(STREETS)].copy()
    comms["geometry"] = shapely.make_valid(comms.geometry.values)  # the source repeats some communities
    comms.dissolve("code", as_index=False)[["code", "name", "street_code", "geometry"]].to_file(
        folder / "communities.geojson")
    comms = read_layer(folder / "communities.geojson", "communities", fix=True)
    for name, gdf in (("streets", layers["streets"]), ("communities", comms), ("grids", layers["grids"]),
                      ("households", layers["households"]), ("members", layers["members"]),
                      ("service_centres", layers["service_centres"])):
        import_layer(engine, name, gdf)
    return layers


@pytest.mark.db
def test_export_from_postgis_street_by_street_equals_whole_export(scenario, engine, db_url, tmp_path):
    """``export --from-db --cluster local:2``: each street read from its partitions, the same files as one read."""
    from api.usecases.scale import export_database
    from geodata.parquet import read_layer_street, read_meta
    from geodata.parquet_store import export_store

    _store_with_communities(engine, scenario, tmp_path)
    whole = export_store(engine, tmp_path / "whole")
    progress = []
    by_street = export_database(db_url, tmp_path / "streets", cluster="local:2",
                                on_progress=lambda done, total, street: progress.append((done, total)))
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert by_street["streets"] == whole["streets"] == sorted(STREETS)
    assert by_street["halo_m"] == whole["halo_m"]
    assert by_street["bounds"] == read_meta(tmp_path / "streets")["bounds"]
    for name in ("grids", "households", "members", "service_centres"):
        assert by_street["counts"][name] == whole["counts"][name], name
        for street in STREETS:
            a = read_layer_street(tmp_path / "whole", name, street)
            b = read_layer_street(tmp_path / "streets", name, street)
            assert list(a.columns) == list(b.columns), name
            pd.testing.assert_frame_equal(a, b, check_dtype=False)
    for street in STREETS:  # each street's bounds hold all of its rows
        x0, y0, x1, y1 = by_street["bounds"][street]
        hh = read_layer_street(tmp_path / "streets", "households", street)
        assert (hh.geometry.x >= x0).all() and (hh.geometry.x <= x1).all() and (hh.geometry.y >= y0).all()


@pytest.mark.db
def test_export_by_street_refuses_rows_in_no_street(scenario, engine, db_url, tmp_path):
    """Without communities no grid has a street: the per-street export says so instead of dropping rows."""
    from api.usecases.scale import export_database
    from geodata.errors import InputError
    from geodata.scenario import load_scenario
    from geodata.store.importer import import_layer

    layers = load_scenario(scenario)
    for name in ("streets", "grids", "households"):
        import_layer(engine, name, layers[name])
    with pytest.raises(InputError, match="no street"):
        export_database(db_url, tmp_path / "out", cluster="local:1")
    assert not (tmp_path / "out" / "households").exists()


def test_cli_export_cluster_needs_the_store(scenario, tmp_path):
    """``export SCENARIO --cluster``: files are read whole, so --cluster is refused (it splits the store's partitions)."""
    from typer.testing import CliRunner

    from api.cli import app

    r = CliRunner().invoke(app, ["export", str(scenario), "--parquet", str(tmp_path / "pq"), "--cluster", "local:1"])
    assert r.exit_code != 0 and "--from-db" in r.output
    assert not (tmp_path / "pq").exists()
