"""`gridmap validate` reports every problem and exits with code 2."""

from validation_cases import _csv


def test_cli_reports_problems_with_exit_code_2(tmp_path):
    import subprocess
    import sys

    p = _csv(tmp_path, {"household_id": ["a"], "lon": [30.2], "lat": [120.1]})
    r = subprocess.run([sys.executable, "-m", "api.cli", "validate", "households", str(p)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "row 1, column lon" in r.stdout and "swapped" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
