"""Property-based run over the OpenAPI spec (Schemathesis): no request the spec allows makes a 5xx.

Every operation of the app's own ``/openapi.json`` is called with generated parameters and bodies
(bounded: ``MAX_EXAMPLES`` per operation, derandomised so a failure repeats) against a real PostGIS
database holding a small synthetic city, with a valid admin token — so requests get past the token
check and reach the queries. A 5xx fails; 4xx answers are the expected refusals.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

pytestmark = [pytest.mark.db, pytest.mark.slow]

MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def seeded(db_url):
    """The session database emptied and loaded with a small synthetic city (6 grids, 1,500 households)."""
    from conftest import truncate_all
    from geodata.io import normalise
    from geodata.store.importer import import_layer
    from geodata.store.session import make_engine
    from geodata.synth import synth_city

    eng = make_engine(db_url)
    truncate_all(eng)
    city = synth_city(1500, seed=3)
    for layer in ("streets", "communities", "grids", "households", "members", "service_centres"):
        import_layer(eng, layer, normalise(city[layer], layer))
    return db_url


@pytest.fixture(scope="module")
def admin_headers(seeded):
    from geodata.store import auth as store
    from geodata.store.session import make_engine

    _, token = store.create_token(make_engine(seeded), "admin", ["*"], label="schemathesis")
    return {"Authorization": f"Bearer {token}"}


# The spec does not depend on the database, so the schema is read at import from an app whose
# engine the ``live_app`` fixture then points at the seeded test database. (Schemathesis' lazy
# ``from_fixture`` loader does not work with pytest 9.)
APP = None


def _app():
    global APP
    if APP is None:
        from api.app import create_app

        APP = create_app("postgresql+psycopg://postgres@127.0.0.1:5432/gridmap_unbound_schema_only")
    return APP


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@pytest.fixture(scope="module")
def live_app(seeded):
    from geodata.store.session import make_engine

    from geodata.store import pool as hot

    app = _app()
    app.state.engine = make_engine(seeded)
    app.state.hot_reader = hot.Reader(seeded, str(app.state.engine.url))  # the event-loop reads too
    return app


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, live_app, admin_headers):
    # Schemathesis generates its own Authorization values from the security scheme; send ours.
    case.headers = {**(case.headers or {}), **admin_headers}
    response = case.call_and_validate(checks=[not_a_server_error])
    # The admin token is valid: a 401 would mean the run never got past the token check. (403 can be
    # right: e.g. /me/... for a token that belongs to no member.)
    assert response.status_code != 401, (case.method, case.path, response.text[:300])


@pytest.fixture(scope="module")
def regional_headers(seeded):
    """A leader token scoped to one community: the region filters and 403 paths get exercised too."""
    from geodata.store import auth as store
    from geodata.store.session import make_engine
    import sqlalchemy as sa

    eng = make_engine(seeded)
    with eng.connect() as c:
        community = c.execute(sa.text("SELECT code FROM communities ORDER BY code LIMIT 1")).scalar_one()
    _, token = store.create_token(eng, "leader", [community], label="schemathesis-regional")
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES // 3, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_regional_token(case, live_app, regional_headers):
    case.headers = {**(case.headers or {}), **regional_headers}
    response = case.call_and_validate(checks=[not_a_server_error])
    assert response.status_code != 401, (case.method, case.path, response.text[:300])


def test_spec_lists_the_routes():
    """The run covers the service, not an empty spec: the audit route and /health at least."""
    paths = set(schema.raw_schema["paths"])
    assert {"/health", "/audit"} <= paths
