"""The test layout keeps its promise (issue 12): domain tests need no PostGIS, no Chromium and no ../shared.

Read statically, so the check holds even when those are present: a domain test (or a fixture it
uses, however indirectly) may not request a database, browser or shared-data fixture, and neither
the domain test modules nor the shared case modules they import may import a database, web or
browser library, or the layers above gridmap.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
DOMAIN = TESTS / "domain"

#: Fixtures that reach a database, a browser or the data in ../shared.
FORBIDDEN_FIXTURES = {"engine", "db_url", "client", "api", "web_db", "page", "browser", "live_app", "live_server",
                      "hangzhou", "shanghai", "hangzhou_grids", "hangzhou_scenario"}
#: Modules a domain test may not import (top-level package names, or dotted prefixes).
FORBIDDEN_MODULES = ("sqlalchemy", "psycopg", "playwright", "fastapi", "geoalchemy2", "alembic", "api", "maps",
                     "geodata", "conftest", "tests")


def _fixtures(path: Path) -> dict[str, set[str]]:
    """Every fixture defined in ``path`` with the fixture names it requests."""
    out = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and any("fixture" in ast.unparse(d) for d in node.decorator_list):
            out[node.name] = {a.arg for a in node.args.args}
    return out


def _tainted_fixtures() -> set[str]:
    """Forbidden fixtures plus every shared or domain fixture that requests one, however indirectly."""
    graph: dict[str, set[str]] = {}
    for path in [TESTS / "conftest.py", *TESTS.glob("*_cases.py"), *DOMAIN.glob("*.py")]:
        graph.update(_fixtures(path))
    tainted = set(FORBIDDEN_FIXTURES)
    while True:
        more = {name for name, needs in graph.items() if needs & tainted} - tainted
        if not more:
            return tainted
        tainted |= more


def _imports(tree: ast.AST, *, top_level_only: bool = False) -> set[str]:
    nodes = tree.body if top_level_only else ast.walk(tree)  # type: ignore[attr-defined]
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _forbidden(module: str) -> bool:
    return any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN_MODULES)


def test_the_tiers_exist():
    for tier in ("domain", "data", "geodata", "store", "api", "maps", "web"):
        assert (TESTS / tier).is_dir(), tier
    assert list(DOMAIN.glob("test_*.py"))


def test_domain_tests_request_no_database_browser_or_shared_data_fixture():
    tainted = _tainted_fixtures()
    bad = []
    for path in sorted(DOMAIN.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef):
                bad += [f"{path.name}::{node.name}({a.arg})" for a in node.args.args if a.arg in tainted]
    assert not bad, f"domain tests that need a database, a browser or ../shared: {bad}"


def test_domain_tests_import_no_database_web_or_browser_library():
    bad = []
    for path in sorted(DOMAIN.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bad += [f"{path.name}: {m}" for m in _imports(tree) if _forbidden(m)]
        # the shared case modules a domain test imports are loaded whole: their top level counts too
        for helper in _imports(tree, top_level_only=True):
            helper_path = TESTS / f"{helper}.py"
            if helper_path.exists():
                helper_tree = ast.parse(helper_path.read_text(encoding="utf-8"))
                bad += [f"{path.name} → {helper}: {m}" for m in _imports(helper_tree, top_level_only=True) if _forbidden(m)]
    assert not bad, f"domain tests importing beyond gridmap: {bad}"


def test_the_check_catches_a_bad_domain_test(tmp_path):
    # The check above must be able to fail: a made-up domain test that asks for `engine` through a
    # fixture and imports sqlalchemy is caught by the same functions.
    source = ("import sqlalchemy\nimport pytest\n\n@pytest.fixture()\ndef stored(engine):\n    return engine\n\n"
              "def test_x(stored):\n    from playwright.sync_api import sync_playwright\n")
    tree = ast.parse(source)
    assert {m for m in _imports(tree) if _forbidden(m)} == {"sqlalchemy", "playwright.sync_api"}
    fixture_file = tmp_path / "bad.py"
    fixture_file.write_text(source, encoding="utf-8")
    assert _fixtures(fixture_file) == {"stored": {"engine"}}
    assert "hz" in _tainted_fixtures() and "scenario" in _tainted_fixtures() and "square" not in _tainted_fixtures()
