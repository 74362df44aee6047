"""The console script on a bad input file: exit code 2, the row named, no traceback."""

import os
from pathlib import Path


def test_cli_nul_byte_exits_2_without_traceback(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    p = tmp_path / "hh.csv"
    p.write_bytes(b"household_id,name,lon,lat\nH1,Zh\x00ang,120.16,30.27\n")
    run = subprocess.run([sys.executable, "-c", "from api.cli import main; main()", "validate", "households", str(p)],
                         check=False, capture_output=True, text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert "data row 1, column name" in run.stdout and "NUL byte" in run.stdout
