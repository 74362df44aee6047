"""The FastAPI service (``gridmap serve``). Routes live in ``api/routes/<name>.py``.

:func:`create_app` takes the :class:`api.settings.Settings` of the deployment (database URL, body
limits, holiday file, docs on/off …) and hands each value to the layer that needs it. While
PostgreSQL is unreachable every route that needs it answers 503 with ``Retry-After``; the pool
re-connects by itself when it is back.
"""

from __future__ import annotations

import gc

import base64
import hashlib
import re
from contextlib import asynccontextmanager

import psycopg
from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError, OperationalError

from api import guards
from api.auth import public, require_token
from api.settings import Settings, get_settings
from geodata.errors import InputError
from geodata.store import pool as hot
from geodata.store.session import make_engine

#: Connections of the hot-path pool per worker process (``geodata.store.pool``): enough for the
#: concurrency one worker serves on 2 cores; more only queue inside PostgreSQL.
HOT_POOL_MIN, HOT_POOL_MAX = 1, 8

RETRY_AFTER_S = 5
DOCS_ASSETS = "/docs/assets"


def _resolve(settings: Settings | str | None) -> Settings:
    """The settings to build with: given, or (a bare URL, as older callers pass) the process settings
    with that database, or the process settings."""
    if settings is None:
        return get_settings()
    if isinstance(settings, str):
        return Settings(database_url=settings)
    return settings


def create_app(settings: Settings | str | None = None) -> FastAPI:
    """Build the app for one deployment.

    Parameters
    ----------
    settings : Settings, str or None
        The deployment's settings (default :func:`api.settings.get_settings`); a string is taken as
        the database URL with every other setting from the environment.
    """
    settings = _resolve(settings)
    app = FastAPI(
        title="gridmap",
        version="0.1.0",
        # Every route needs a bearer token (401 without) except those marked ``public`` (/health).
        dependencies=[Depends(require_token)],
        description="Grid management for 网格党支部 work: 包片联户 links, coverage gaps, nearest responder and "
                    "incident dispatch (红黄绿灯), grid redraw, maps. Coordinates WGS84, distances metres.",
        # The stock docs load Swagger UI from a CDN; ours are served from the package (see _add_docs).
        docs_url=None, redoc_url=None, openapi_url="/openapi.json" if settings.docs_enabled else None,
        lifespan=_hot_pool_lifespan,
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url)
    # Hot reads (/health, /responders/nearest, /me/households) in the event loop (geodata.store.pool).
    app.state.hot_reader = hot.Reader(settings.database_url, str(app.state.engine.url))
    # Token before body, size limits (413), 401 throttling (429), lone surrogates, NaN/Infinity and
    # values PostgreSQL refuses → 422, never 500; security headers (api/guards.py).
    guards.install(app, max_bytes=settings.max_body_bytes, anonymous_bytes=settings.anonymous_body_bytes,
                   auth_failures_per_minute=settings.auth_failures_per_minute)
    _add_error_handlers(app)
    _add_health(app)
    if settings.docs_enabled:
        _add_docs(app)
    _include_routers(app)
    _hot_routes_first(app)
    return app


#: Paths served by a router of their own that the pages and the dispatch desk call most (issue 19).
HOT_PATHS = frozenset({"/responders/nearest"})


def _hot_routes_first(app: FastAPI) -> None:
    """Move the routers (or routes) serving only :data:`HOT_PATHS` right after ``/health``.

    Starlette tries routes in order, and with ~20 routers ahead of it matching cost a hot request about
    a fifth of its CPU. The move changes no answer: a request reaches the first route matching it fully,
    and no other route matches a hot path fully (tests/api/test_hotpath.py checks this).
    """
    routes = app.router.routes
    hot = [r for r in routes if _serves_only(r, HOT_PATHS)]
    rest = [r for r in routes if not any(r is h for h in hot)]
    at = next((i + 1 for i, r in enumerate(rest) if getattr(r, "path", None) == "/health"), 0)
    routes[:] = rest[:at] + hot + rest[at:]
    if hasattr(app.router, "_mark_routes_changed"):  # FastAPI ≥ 0.16x caches its route lists by version
        app.router._mark_routes_changed()


def _serves_only(route, paths: frozenset[str]) -> bool:
    """Whether ``route`` (a route, or FastAPI's wrapper of an included router) serves only ``paths``."""
    inner = getattr(route, "original_router", None)
    if inner is not None:
        served = [getattr(r, "path", None) for r in inner.routes]
        return bool(served) and all(p in paths for p in served)
    return getattr(route, "path", None) in paths


@asynccontextmanager
async def _hot_pool_lifespan(app: FastAPI):
    """Open the hot-path pool with the server and close it on shutdown (without it, as under a bare
    ``TestClient(app)``, each hot read opens and closes its own connection)."""
    # Everything imported and built so far lives as long as the server: moved out of the collector's
    # reach, so a full collection scans only what requests allocate (issue 19: the p99 of the hot paths).
    if app.state.settings.gc_freeze:
        gc.collect()
        gc.freeze()
    await app.state.hot_reader.open(HOT_POOL_MIN, HOT_POOL_MAX)
    try:
        yield
    finally:
        await app.state.hot_reader.close()


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError):
        return JSONResponse(status_code=422, content=guards.cap_echo(
            {"detail": str(exc), "problems": [p.as_dict() for p in exc.problems]}))

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError):
        return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)},
                            content={"detail": "database unavailable, retry shortly"})

    @app.exception_handler(psycopg.OperationalError)
    async def _hot_db_down(request: Request, exc: psycopg.OperationalError):
        # The hot paths' psycopg pool: unreachable, timed out, or a connection lost twice in a row.
        return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)},
                            content={"detail": "database unavailable, retry shortly"})

    @app.exception_handler(psycopg.DataError)
    async def _hot_data_error(request: Request, exc: psycopg.DataError):
        # As guards.data_error: PostgreSQL's (or psycopg's) reason only, never the parameters.
        reason = (str(exc).strip().splitlines() or ["invalid value"])[0]
        return JSONResponse(status_code=422, content={"detail": guards.cap_echo(f"invalid value: {reason}")})

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError):
        if exc.connection_invalidated:
            return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)},
                                content={"detail": "database connection lost, retry shortly"})
        raise exc


def _add_health(app: FastAPI) -> None:
    @app.get("/health", tags=["service"])
    @public
    async def health():
        """Liveness and database reachability (no token needed)."""
        ok = await hot.ping(app.state.hot_reader)
        body = {"status": "ok" if ok else "degraded", "database": "reachable" if ok else "unreachable"}
        if ok:
            return body
        return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}, content=body)


def _script_hashes(html: str) -> str:
    """CSP sources (``'sha256-…'``) of the inline scripts of ``html``."""
    bodies = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    return " ".join("'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'" for b in bodies)


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with its assets from the ``swagger-ui-bundle`` package (Apache-2.0): the
    service runs on intranets without internet, so nothing is loaded from a CDN."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")
    page = get_swagger_ui_html(openapi_url=app.openapi_url, title="gridmap API",
                               swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png").body.decode()
    csp = (f"default-src 'self'; script-src 'self' {_script_hashes(page)}; style-src 'self' 'unsafe-inline'; "
           "img-src 'self' data:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'")

    @app.get("/docs", include_in_schema=False)
    @public
    def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": csp})


def _include_routers(app: FastAPI) -> None:
    # --- REGISTER: one line per router ----------------------------------------------------------
    from api.routes import audit as audit_routes
    app.include_router(audit_routes.router)
    from api.routes import maps as maps_routes
    app.include_router(maps_routes.router)
    from api.routes import needs as needs_routes  # before dispatch: /incidents/flagged ahead of /incidents/{id}
    app.include_router(needs_routes.router)
    from api.routes import stats as stats_routes  # before dispatch: /incidents/stats is not /incidents/{id}
    app.include_router(stats_routes.router)
    from api.routes import dispatch as dispatch_routes
    app.include_router(dispatch_routes.router)
    from api.routes import visits as visits_routes; app.include_router(visits_routes.router)  # noqa: E702 — issue 15
    from api.routes import nearest as nearest_routes
    app.include_router(nearest_routes.router)
    from api.routes import links as links_routes
    app.include_router(links_routes.router)
    from api.routes import coverage as coverage_routes
    app.include_router(coverage_routes.router)
    from api.routes import grids as grids_routes
    app.include_router(grids_routes.router)
    from api.routes import tiles as tiles_routes
    app.include_router(tiles_routes.router)
    from api.routes import open311 as open311_routes
    app.include_router(open311_routes.router)
    from api.routes import planner as planner_routes; app.include_router(planner_routes.router)  # noqa: E702 — issue 16
    from api import web  # pages, login sessions, CSRF, /static (api/web)
    web.install(app)
    # --- end REGISTER ----------------------------------------------------------------------------
