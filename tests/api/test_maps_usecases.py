"""The map use cases and the application layer's shape: incident lights, the plan's step list, no
route or use case importing a command module.
"""

from __future__ import annotations

import pandas as pd

from api.usecases.maps import incident_lights

from maps_cases import _incidents


def test_incident_lights_follow_the_dispatch_rules():
    inc, at = _incidents()
    lit = incident_lights(inc, at)
    assert list(lit["light"]) == list(inc["expect"])
    assert (pd.to_datetime(lit["deadline_at"].iloc[0]) - pd.Timestamp(inc["reported_at"].iloc[0]).tz_localize(
        "Asia/Shanghai")) == pd.Timedelta(hours=24)


def test_the_plan_is_one_explicit_ordered_list():
    from api.usecases import gaps, links, maps, plan, redraw

    assert plan.PLAN_STEPS == (redraw.step_redraw, plan.step_census, links.step_links, gaps.step_gaps,
                               maps.step_maps)
    assert isinstance(plan.PLAN_STEPS, tuple)  # nothing can register itself into it


def test_routes_and_use_cases_import_no_command_module():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "api"
    for folder in ("routes", "usecases"):
        for path in (root / folder).glob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
            names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
            bad = [m for m in names if m.startswith(("api.commands", "api.cli", "typer", "rich"))
                   or (folder == "usecases" and m.startswith(("fastapi", "api.routes")))]
            assert not bad, f"{path.name} imports {bad}"
