"""The FastAPI service (``gridmap serve``). Routes live in ``api/routes/<name>.py``.

The database comes from ``GRIDMAP_DATABASE_URL``. While PostgreSQL is unreachable every route that
needs it answers 503 with ``Retry-After``; the pool re-connects by itself when it is back.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError

from geodata.errors import InputError
from geodata.store.session import make_engine, ping

RETRY_AFTER_S = 5


def create_app(database_url: str | None = None) -> FastAPI:
    """Build the app bound to one PostGIS database (``database_url`` or GRIDMAP_DATABASE_URL)."""
    app = FastAPI(
        title="gridmap",
        version="0.1.0",
        description="Grid management for 网格党支部 work: 包片联户 links, coverage gaps, nearest responder and "
                    "incident dispatch (红黄绿灯), grid redraw, maps. Coordinates WGS84, distances metres.",
    )
    app.state.engine = make_engine(database_url)

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
    def health():
        """Liveness and database reachability (no token needed)."""
        ok = ping(app.state.engine)
        body = {"status": "ok" if ok else "degraded", "database": "reachable" if ok else "unreachable"}
        if ok:
            return body
        return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}, content=body)

    # --- REGISTER: one line per router ----------------------------------------------------------
    # --- end REGISTER ----------------------------------------------------------------------------
    return app
