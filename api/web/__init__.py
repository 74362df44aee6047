"""The web face: server-rendered pages (Jinja2), login sessions, CSRF, static files, job pages.

``install(app)`` wires everything into the FastAPI app: the ``/static`` files (served locally, no
CDN), the CSRF middleware, the page routers and the handlers that turn "not logged in" into a
redirect to ``/login`` and page refusals into Chinese error pages with the same status codes as the
JSON routes.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.auth import SESSION_COOKIE
from api.web.csrf import CSRFMiddleware
from api.web.pages import LoginRequired, PageError
from api.web.render import STATIC_DIR, render


def install(app: FastAPI, max_body_bytes: int = 32 << 20) -> None:
    """Add the pages, static files, CSRF middleware and page error handlers to ``app``."""
    from api.web import job_pages, leader, needs, pages, pioneers, planner, planner_redraw, report, responder

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.add_middleware(CSRFMiddleware, max_body_bytes=max_body_bytes)
    app.include_router(leader.router)  # before pages: /leader lives in api/web/leader.py
    from api.web import leader_layers; app.include_router(leader_layers.router)  # noqa: E702 — issue 14 layers
    app.include_router(pages.router)
    app.include_router(job_pages.router)
    app.include_router(report.router)  # residents: /report (no login)
    app.include_router(responder.router)  # /responder (issue 15)
    app.include_router(planner.router)  # /planner (issue 16)
    app.include_router(needs.router)  # leaders: /needs
    app.include_router(pioneers.router)  # public: /pioneers (先锋地图)
    app.include_router(planner_redraw.router)  # /planner/redraw, /planner/drafts (issue 16)
    from api.web import notices; app.include_router(notices.router)  # noqa: E702 — dispatchers' /notices
    from api.web import dispatch_desk; app.include_router(dispatch_desk.router)  # noqa: E702 — /dispatch 调度台

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired):
        response = RedirectResponse("/login", status_code=303)
        if request.cookies.get(SESSION_COOKIE):  # expired or tampered: drop it
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError):
        return render(request, "error.html", status_code=exc.status, message=exc.message, title="无法打开")
