"""The main job end to end: the bundled sample (as `make demo` runs it) and real Hangzhou grids."""

import json
import subprocess
import sys

import geopandas as gpd
import pyogrio
from typer.testing import CliRunner

from api.cli import app
from conftest import SAMPLE


def test_plan_on_bundled_sample_without_database(tmp_path, monkeypatch):
    # a database URL that cannot work: the plan must not touch it
    monkeypatch.setenv("GRIDMAP_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["plan", str(SAMPLE), "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    layers = pyogrio.list_layers(out / "plan.gpkg")[:, 0].tolist()
    assert {"grids", "households"} <= set(layers)
    grids = gpd.read_file(out / "plan.gpkg", layer="grids")
    hh = gpd.read_file(out / "plan.gpkg", layer="households")
    assert summary["grids"]["households"] == len(hh) > 1000
    assert grids["households"].sum() == len(hh)
    assert set(grids["status"]) <= {"ok", "over-size", "under-size", "no branch", "no members"}


def test_synth_then_plan_on_real_hangzhou_grids(tmp_path, hangzhou):
    d = tmp_path / "hz"
    r = CliRunner().invoke(app, ["synth", "--grids", str(hangzhou / "grids.geojson"), "--out", str(d), "--seed", "1"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "plan"
    r = CliRunner().invoke(app, ["plan", str(d), "--out", str(out), "--no-maps"])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["grids"]["total"] == 297  # 332 polygon rows, multi-part grids merged by code
    by = s["grids"]["by_status"]
    assert by.get("no branch", 0) > 0 and by.get("no members", 0) > 0
    assert by.get("over-size", 0) > 0 and by.get("under-size", 0) > 0 and by.get("ok", 0) > 100
    assert s["grids"]["households_outside_grids"] == 0


def test_console_script_reports_bad_input_cleanly(tmp_path):
    bad = tmp_path / "s"
    bad.mkdir()
    (bad / "households.csv").write_text("household_id,lon,lat\na,120.1,30.2\na,120.1,30.2\n")
    r = subprocess.run([sys.executable, "-m", "api.cli", "plan", str(bad), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "duplicate id 'a' (rows 1, 2)" in r.stdout


def test_a_plan_output_can_be_mapped_with_its_own_status(tmp_path):
    # `gridmap map coverage OUT/plan.gpkg` must show the plan's statuses, not recompute them
    # without members (the plan writes no members layer: it holds personal data)
    from api.usecases.maps import grid_status_of
    from geodata.scenario import load_scenario

    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["plan", str(SAMPLE), "--out", str(out), "--no-maps"])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    layers = load_scenario(out / "plan.gpkg")
    assert {"grid_status", "gap_cells", "links"} <= set(layers)
    status = grid_status_of(layers)
    assert int(status["blank"].sum()) == summary["gaps"]["blank_grids"] == 1  # the sample's grid without a branch
    assert int((status["members"] > 0).sum()) == int((layers["grid_status"]["members"] > 0).sum()) > 0
    assert status["blank_reason"].fillna("").str.contains("no members").sum() == 0
