"""The web pages: login/logout, each role's home page (the shell later issues fill) and job progress.

Every page checks the login session, role and region on the server (:func:`page_principal`,
:func:`require_page_role`); a page or job outside the user's regions answers the same 404 as a
missing one. Unsafe requests need the session's CSRF token (``api.web.csrf``).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse

from api.auth import SESSION_COOKIE, Principal, public, session_principal
from api.settings import get_settings
from api.usecases import accounts
from api.web.render import BASEMAP_COOKIE, ROLE_NAMES, render, usable_basemaps
from geodata.store import auth as auth_store
from geodata.store import users
from geodata.store.figures import region_figures

router = APIRouter(include_in_schema=False)

LOGIN_CSRF_COOKIE = "gridmap_login_csrf"
#: Home pages and the roles that may open them (admin may open every page).
HOMES = {"leader": ("leader", "dispatcher", "viewer"), "responder": ("responder", "dispatcher"),
         "planner": ("planner",)}
HOME_TITLES = {"leader": "领导驾驶舱", "responder": "我的联户", "planner": "网格规划"}
ROLE_HOME = {"leader": "leader", "viewer": "leader", "planner": "planner", "responder": "responder"}


class LoginRequired(Exception):
    """No live login session: the browser is sent to /login."""


class PageError(Exception):
    """A page refused with ``status`` and a message in Chinese (rendered by ``error.html``)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


NOT_FOUND = "页面不存在，或不在您的管辖范围内。"


def page_principal(request: Request) -> Principal:
    """Dependency of every page: the logged-in user's :class:`Principal`, else a redirect to /login."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        raise LoginRequired()
    try:
        principal = session_principal(request)
    except HTTPException:  # expired, ended or tampered session id
        raise LoginRequired() from None
    request.state.csrf_token = users.csrf_token_for(session_id)
    request.state.region_names = users.region_names(principal.engine, principal.regions)
    return principal


PagePrincipal = Annotated[Principal, Depends(page_principal)]


def require_page_role(principal: Principal, page: str) -> None:
    """403 unless the role may open ``page`` (the JSON routes answer a wrong role with 403 too)."""
    if not principal.has_role(*HOMES[page]):
        raise PageError(403, f"您的角色（{ROLE_NAMES.get(principal.role, principal.role)}）不能打开这个页面。")


def _audit(request: Request, action: str, user: users.UserRecord | None, **detail) -> None:
    detail["address"] = _address(request)
    auth_store.record_audit(request.app.state.engine, token_id=None, role=user.role if user else None,
                            member_id=user.member_id if user else None, action=action, what="session",
                            ids=[str(user.user_id)] if user else [], detail=detail)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _set_session_cookie(response, session_id: str, request: Request) -> None:
    settings = get_settings()
    response.set_cookie(SESSION_COOKIE, session_id, max_age=settings.session_max_age_s, httponly=True,
                        samesite="lax", secure=settings.secure_cookies or request.url.scheme == "https", path="/")


# -- login / logout ---------------------------------------------------------------------------------
@router.get("/login")
@public
def login_form(request: Request, error: str | None = None, status_code: int = 200):
    """The login form (fields ``username``, ``password``) with a one-time CSRF token (double submit)."""
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", status_code=status_code, user=None, csrf_token=token, error=error)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login",
                        secure=get_settings().secure_cookies or request.url.scheme == "https")
    return response


@router.post("/login")
@public
def login(request: Request, username: Annotated[str, Form(max_length=200)] = "",
          password: Annotated[str, Form(max_length=1000)] = "",
          csrf_token: Annotated[str, Form(max_length=200)] = ""):
    """Check the password; a good one starts a new session (new id every login) and goes to ``/``."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(csrf_token, expected):
        raise PageError(403, "登录表单已过期，请刷新页面后重新登录。")
    engine = request.app.state.engine
    username = username.strip()
    wait = users.throttle_seconds(engine, username, _address(request))
    if wait:
        _audit(request, "login_throttled", None, username=username)
        response = login_form(request, error=f"密码错误次数过多，请 {(wait + 59) // 60} 分钟后再试。", status_code=429)
        response.headers["Retry-After"] = str(wait)
        return response
    user = users.authenticate(engine, username, password)
    if user is None:
        accounts.record_failed_login(engine, username, _address(request))
        return login_form(request, error="用户名或密码不正确。", status_code=401)
    session_id = accounts.log_in(engine, user, get_settings().session_max_age_s, _address(request),
                                 old_session=request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/", status_code=303)
    _set_session_cookie(response, session_id, request)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
@public
def logout(request: Request, principal: PagePrincipal):
    """End the session (the CSRF token was checked by the middleware) and go back to the login form."""
    accounts.log_out(request.app.state.engine, request.state.session_user, request.cookies[SESSION_COOKIE],
                     _address(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- home pages --------------------------------------------------------------------------------------
@router.post("/prefs/basemap")
def choose_basemap(request: Request, principal: PagePrincipal, basemap: Annotated[str, Form(max_length=20)] = "",
                   back: Annotated[str, Form(max_length=500)] = "/"):
    """底图切换: remember this browser's base map (a cookie; the CSRF token was checked by the middleware)."""
    if basemap not in usable_basemaps():
        raise PageError(422, "没有这种底图。")
    # Only a path of this site: never an open redirect.
    target = back if back.startswith("/") and not back.startswith("//") else "/"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(BASEMAP_COOKIE, basemap, max_age=365 * 24 * 3600, httponly=True, samesite="lax", path="/",
                        secure=get_settings().secure_cookies or request.url.scheme == "https")
    return response


@router.get("/")
@public
def home(request: Request, principal: PagePrincipal):
    """Send each role to its home page; admin and dispatcher pick one."""
    page = ROLE_HOME.get(principal.role)
    if page:
        return RedirectResponse(f"/{page}", status_code=303)
    pages = [(p, HOME_TITLES[p]) for p, roles in HOMES.items() if principal.has_role(*roles)]
    return render(request, "pick.html", pages=pages, region_names=request.state.region_names)


def _region_page(request: Request, principal: Principal, page: str, template: str, **extra):
    require_page_role(principal, page)
    figures = region_figures(principal.engine, principal.grid_codes())
    return render(request, template, page=page, title=HOME_TITLES[page], figures=figures,
                  region_names=request.state.region_names, **extra)


@router.get("/planner")
@public
def planner_home(request: Request, principal: PagePrincipal):
    """Planners' home: grid figures, the map, and background jobs (recompute links) of the region."""
    from geodata.store.jobs import list_progress

    scope = principal.scope()
    codes = None if principal.everywhere else scope.streets | scope.communities | scope.grids
    jobs = list_progress(principal.engine, codes, limit=10)
    return _region_page(request, principal, "planner", "planner.html", map_layers="grids,households", jobs=jobs)


# The responders' home page lives in api.web.responder.
