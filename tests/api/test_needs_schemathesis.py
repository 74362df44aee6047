"""Schemathesis over the public routes without a token (Open311, 先锋地图 GeoJSON) and Hypothesis over the
/report form (not in the OpenAPI spec: a page): no generated request makes a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.api.test_schemathesis import _app

pytestmark = [pytest.mark.db, pytest.mark.slow]

public_schema = schemathesis.openapi.from_asgi("/openapi.json", _app()).include(path_regex="^/(open311|pioneers)")


@pytest.fixture(scope="module")
def anonymous_app(db_url):
    from conftest import truncate_all

    from geodata.store.session import make_engine
    from tests.web.conftest import seed_region

    eng = make_engine(db_url)
    truncate_all(eng)
    seed_region(eng)
    _app().state.engine = eng
    _app().state.report_limits = None
    return _app()


@public_schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_public_routes_without_token_make_no_server_errors(case, anonymous_app):
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    case.call_and_validate(checks=[not_a_server_error])


TEXT = st.text(max_size=60)


@given(category=st.sampled_from(["环境卫生", "求助服务", "", "x"]) | TEXT, description=TEXT, lon=TEXT | st.just("121.4812"),
       lat=TEXT | st.just("31.2051"), coords=st.sampled_from(["wgs84", "gcj02", "bd09", ""]), phone=TEXT, skill=TEXT,
       address=TEXT)
@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_report_form_makes_no_server_errors(anonymous_app, tmp_path_factory, **form):
    from fastapi.testclient import TestClient

    anonymous_app.state.report_limits = None  # every example a fresh client (the limit is tested elsewhere)
    with TestClient(anonymous_app, raise_server_exceptions=False) as c:
        r = c.post("/report", data=form)
    assert r.status_code < 500, (form, r.text[:300])
