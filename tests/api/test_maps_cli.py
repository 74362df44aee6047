"""Map commands and the plan's maps (files in, files out)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from geodata.io import write_layer

from maps_cases import assert_not_blank, layer_data


# --- CLI and plan -------------------------------------------------------------------------------

def _scenario_dir(tmp_path, small):
    d = tmp_path / "scen"
    d.mkdir()
    for k in ("grids", "households", "members", "service_centres", "communities"):
        write_layer(small[k], d / f"{k}.gpkg")
    return d


def test_cli_map_commands(tmp_path, small):
    from api.cli import app

    d = _scenario_dir(tmp_path, small)
    r = CliRunner().invoke(app, ["map", "coverage", str(d), "--tiles", "none", "--out", str(tmp_path / "c.html")])
    assert r.exit_code == 0, r.output
    assert len(layer_data((tmp_path / "c.html").read_text(encoding="utf-8"))[0]["features"]) == len(small["grids"])
    r = CliRunner().invoke(app, ["map", "service", str(d), "--tiles", "amap", "--out", str(tmp_path / "s.html")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["map", "nonsense", str(d), "--out", str(tmp_path / "x.html")])
    assert r.exit_code == 2 and "unknown map" in r.output
    r = CliRunner().invoke(app, ["map", "incidents", str(d), "--out", str(tmp_path / "x.html")])
    assert r.exit_code == 2 and "incidents layer" in r.output


@pytest.mark.browser
def test_cli_png(tmp_path, small):
    from api.cli import app

    d = _scenario_dir(tmp_path, small)
    png = tmp_path / "c.png"
    r = CliRunner().invoke(app, ["map", "coverage", str(d), "--tiles", "none", "--out", str(tmp_path / "c.html"),
                                 "--png", str(png)])
    assert r.exit_code == 0, r.output
    assert_not_blank(png.read_bytes())


def test_plan_writes_maps_last(tmp_path, small):
    from api.usecases.maps import step_maps
    from api.usecases.plan import PLAN_STEPS, PlanOptions, run_plan

    assert PLAN_STEPS[-1] is step_maps
    d = _scenario_dir(tmp_path, small)
    ctx = run_plan(PlanOptions(scenario=d, outdir=tmp_path / "out", extra={"map_tiles": "none"}))
    written = ctx.summary["maps"]["written"]
    assert {"coverage", "service"} <= set(written)
    for k in written:
        assert (tmp_path / "out" / "maps" / f"{k}.html").exists()
    html = (tmp_path / "out" / "maps" / "coverage.html").read_text(encoding="utf-8")
    assert "联户覆盖率" in html  # the links step's output reached the coverage map
    for name in small["households"]["name"].iloc[:50]:
        assert name not in (tmp_path / "out" / "maps" / "links.html").read_text(encoding="utf-8") \
            if "links" in written else True
    ctx = run_plan(PlanOptions(scenario=d, outdir=tmp_path / "out2", maps=False))
    assert not (tmp_path / "out2" / "maps").exists()
