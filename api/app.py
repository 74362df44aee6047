"""The FastAPI service (``gridmap serve``). Routes live in ``api/routes/<name>.py``.

The database comes from ``GRIDMAP_DATABASE_URL``. While PostgreSQL is unreachable every route that
needs it answers 503 with ``Retry-After``; the pool re-connects by itself when it is back.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError

from api.auth import public, require_token
from api import guards
from geodata.errors import InputError
from geodata.store.session import make_engine, ping

RETRY_AFTER_S = 5


def create_app(database_url: str | None = None) -> FastAPI:
    """Build the app bound to one PostGIS database (``database_url`` or GRIDMAP_DATABASE_URL)."""
    app = FastAPI(
        title="gridmap",
        version="0.1.0",
        # Every route needs a bearer token (401 without) except those marked ``public`` (/health).
        dependencies=[Depends(require_token)],
        description="Grid management for 网格党支部 work: 包片联户 links, coverage gaps, nearest responder and "
                    "incident dispatch (红黄绿灯), grid redraw, maps. Coordinates WGS84, distances metres.",
    )
    app.state.engine = make_engine(database_url)
    # Size limit (413), NaN/Infinity and values PostgreSQL refuses → 422, never 500 (api/guards.py).
    guards.install(app)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError):
        return JSONResponse(status_code=422, content={"detail": str(exc), "problems": [p.as_dict() for p in exc.problems]})

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError):
        return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)},
                            content={"detail": "database unavailable, retry shortly"})

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError):
        if exc.connection_invalidated:
            return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)},
                                content={"detail": "database connection lost, retry shortly"})
        raise exc

    @app.get("/health", tags=["service"])
    @public
    def health():
        """Liveness and database reachability (no token needed)."""
        ok = ping(app.state.engine)
        body = {"status": "ok" if ok else "degraded", "database": "reachable" if ok else "unreachable"}
        if ok:
            return body
        return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}, content=body)

    # --- REGISTER: one line per router ----------------------------------------------------------
    from api.routes import audit as audit_routes
    app.include_router(audit_routes.router)
    from api.routes import maps as maps_routes
    app.include_router(maps_routes.router)
    from api.routes import dispatch as dispatch_routes
    app.include_router(dispatch_routes.router)
    from api.routes import links as links_routes
    app.include_router(links_routes.router)
    from api.routes import coverage as coverage_routes
    app.include_router(coverage_routes.router)
    from api.routes import grids as grids_routes
    app.include_router(grids_routes.router)
    from api import web  # pages, login sessions, CSRF, /static (api/web)
    web.install(app)
    # --- end REGISTER ----------------------------------------------------------------------------
    return app
