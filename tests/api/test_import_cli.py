"""`gridmap import` and `gridmap db` commands against a real PostGIS."""

import pytest
from typer.testing import CliRunner

from geodata.store.importer import table_counts


@pytest.mark.db
def test_cli_import_and_db_commands(db_url, engine, tmp_path, monkeypatch, hangzhou_scenario):
    from api.cli import app
    from geodata.io import write_layer

    monkeypatch.setenv("GRIDMAP_DATABASE_URL", db_url)
    p = write_layer(hangzhou_scenario["service_centres"], tmp_path / "centres.csv")
    runner = CliRunner()
    r = runner.invoke(app, ["import", "service_centres", str(p)])
    assert r.exit_code == 0, r.output
    assert f"{len(hangzhou_scenario['service_centres'])} inserted" in r.output.replace(",", "")
    r = runner.invoke(app, ["db", "current"])
    assert r.exit_code == 0 and r.output.strip() != "base (empty)"
    bad = tmp_path / "bad.csv"
    bad.write_text("centre_id,lon,lat\nX,120.1,30.2\nY,30.2,120.1\n")
    before = table_counts(engine)
    r = runner.invoke(app, ["import", "service_centres", str(bad)])
    assert r.exit_code != 0
    assert table_counts(engine) == before
