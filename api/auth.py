"""Bearer tokens, roles, region scopes and personal-data rules for the HTTP API.

Every route but ``/health`` needs ``Authorization: Bearer <token>`` (tokens come from
``gridmap token create``). ``api.app`` applies :func:`require_token` app-wide, so a route gets the
check even if it never names it; a route that needs the caller declares
``principal: Principal = Depends(current_principal)`` (FastAPI resolves it once per request).

- no or unknown/revoked token → 401 with ``WWW-Authenticate: Bearer``;
- wrong role → 403 (:func:`require_roles`);
- object outside the token's regions → the same 404 as a missing one (:meth:`Principal.require`);
- residents' name/phone/id_number: masked unless :meth:`Principal.allows_pii`; each unmasked read is
  recorded with :func:`record_pii_read` (ids only).

Regions: a token covers street (街道), community (社区) or grid (网格) codes; a street covers its
communities and their grids, a community its grids (from the ``communities``/``grids`` tables).
``*`` covers everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from geodata.store import auth as store
from geodata.store import pool as hot
from gridmap.privacy import PII_ROLES, ROLES, has_pii, mask_record

_bearer = HTTPBearer(auto_error=False, scheme_name="token",
                     description="A token from `gridmap token create` (sent as `Authorization: Bearer <token>`).")

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


@dataclass
class Principal:
    """The caller behind a token.

    Attributes
    ----------
    token_id : int
        Id of the token (``api_tokens.token_id``); 0 for a principal built without a token.
    role : str
        One of ``gridmap.privacy.ROLES``.
    regions : list of str
        Street, community or grid codes the token covers; ``["*"]`` = every region.
    member_id : str or None
        For a responder, the member (党员) the token belongs to.
    """

    token_id: int
    role: str
    regions: list[str]
    member_id: str | None = None
    engine: Engine | None = field(default=None, repr=False, compare=False)
    _scope: store.RegionScope | None = field(default=None, repr=False, compare=False)

    # -- scope --------------------------------------------------------------------------------
    @property
    def everywhere(self) -> bool:
        """True for a token covering every region (``*``)."""
        return store.ALL_REGIONS in self.regions

    def scope(self) -> store.RegionScope:
        """The token's regions expanded to every street, community and grid code inside them
        (computed once per principal, i.e. once per request)."""
        if self._scope is None:
            if self.everywhere:
                self._scope = store.RegionScope(True, frozenset(), frozenset(), frozenset())
            else:
                if self.engine is None:
                    raise RuntimeError("Principal has no engine to resolve its regions")
                self._scope = store.expand_regions(self.engine, self.regions)
        return self._scope

    def covers(self, grid_code: str | None = None, community_code: str | None = None,
               street_code: str | None = None) -> bool:
        """Whether an object in this grid / community / street lies inside the token's regions.

        Give the codes you know of the object (e.g. an incident's grid, community and street); it
        is covered when any of them lies inside a region of the token. An object with no code at
        all is covered only by a ``*`` token.
        """
        if self.everywhere:
            return True
        sc = self.scope()
        return bool((grid_code and grid_code in sc.grids)
                    or (community_code and community_code in sc.communities)
                    or (street_code and street_code in sc.streets))

    def covers_code(self, code: str) -> bool:
        """Whether a region code of any level (street, community or grid) lies inside the token's regions."""
        if self.everywhere:
            return True
        sc = self.scope()
        return code in sc.grids or code in sc.communities or code in sc.streets

    def grid_codes(self) -> frozenset[str] | None:
        """Every grid code the token covers, or None when it covers everything (no filter needed).

        For list queries: ``WHERE grid_code = ANY(:codes)``.
        """
        return None if self.everywhere else self.scope().grids

    def community_codes(self) -> frozenset[str] | None:
        """Every community code the token covers, or None when it covers everything."""
        return None if self.everywhere else self.scope().communities

    def has_role(self, *roles: str) -> bool:
        """True when the token's role is one of ``roles`` (``admin`` always is)."""
        return self.role == "admin" or self.role in roles

    def allows_pii(self, grid_code: str | None = None, community_code: str | None = None,
                   street_code: str | None = None) -> bool:
        """Whether residents' personal data of an object in this region may be shown unmasked:
        the role is one of ``gridmap.privacy.PII_ROLES`` and the region is covered. (A responder
        route should further check that the household is one of the responder's own links.)"""
        return self.role in PII_ROLES and self.covers(grid_code, community_code, street_code)

    # -- raising helpers for routes ------------------------------------------------------------
    def require(self, grid_code: str | None = None, community_code: str | None = None,
                street_code: str | None = None) -> None:
        """Raise :func:`not_found` unless :meth:`covers` (same arguments)."""
        if not self.covers(grid_code, community_code, street_code):
            raise not_found()

    def require_code(self, code: str) -> None:
        """Raise :func:`not_found` unless :meth:`covers_code` (an unknown code is covered by no scoped token)."""
        if not self.covers_code(code):
            raise not_found()

    def require_role(self, *roles: str) -> None:
        """Raise 403 unless :meth:`has_role`."""
        if not self.has_role(*roles):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail=f"role {self.role} may not do this (needs {' or '.join(roles) or 'admin'})")


#: The one answer for "missing" and "not yours": nothing is told about objects in other regions.
NOT_FOUND_DETAIL = "not found or outside your regions (不存在或不在管辖范围内)"


def not_found() -> HTTPException:
    """404 with :data:`NOT_FOUND_DETAIL`, for an object that is missing or outside the caller's regions."""
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND_DETAIL)


def _unauthorized(request: Request, detail: str) -> HTTPException:
    """401, counted against the caller's address (``api.guards.AuthFailures``: repeated 401s get 429)."""
    failures = getattr(request.app.state, "auth_failures", None)
    if failures is not None:
        failures.record(request.client.host if request.client else "?")
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers=UNAUTHORIZED)


def current_principal(request: Request,
                      credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """FastAPI dependency: the :class:`Principal` of the request's bearer token, or 401.

    Looks the SHA-256 of the token up in ``api_tokens`` (revoked tokens are refused). While the
    database is down this raises ``OperationalError``, which the app answers with 503.
    """
    cached = getattr(request.state, "principal", None)
    if cached is not None:  # already resolved for this request (app-wide gate, then the route)
        return cached
    if (credentials is None or not credentials.credentials) and request.cookies.get(SESSION_COOKIE):
        return session_principal(request)  # a browser logged in at /login (see the block below)
    if credentials is None or not credentials.credentials:
        # Not counted as a failure: a missing token guesses nothing (only wrong tokens are throttled).
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing bearer token", headers=UNAUTHORIZED)
    token = credentials.credentials.strip()
    if not token.startswith(store.TOKEN_PREFIX) or len(token) > 200:
        raise _unauthorized(request, "invalid or revoked token")
    engine = request.app.state.engine
    # The request gate (api.guards) already looked this token up before reading the body.
    seen = getattr(request.state, "bearer", None)
    rec = seen[1] if seen is not None and seen[0] == token else store.find_token(engine, token)
    if rec is None:
        raise _unauthorized(request, "invalid or revoked token")
    principal = Principal(rec.token_id, rec.role, list(rec.regions), rec.member_id, engine=engine)
    request.state.principal = principal
    return principal


# --- login sessions (web pages): the same Principal from a session cookie -------------------------
#: Name of the HttpOnly cookie holding a login session id (set by ``api.web`` at ``/login``).
SESSION_COOKIE = "gridmap_session"


def session_principal(request: Request) -> Principal:
    """The :class:`Principal` of the request's login-session cookie, or 401.

    Used when a request has no bearer token. The session must be live (server-side expiry) and its
    account enabled. ``token_id`` is 0; ``request.state.session_user`` holds the account for pages
    and audit entries. Unsafe requests authenticated this way need a CSRF token (``api.web.csrf``).
    """
    from geodata.store import users

    engine = request.app.state.engine
    sid = request.cookies.get(SESSION_COOKIE, "")
    # The request gate (api.guards) looked this session up before reading the body: not again.
    seen = getattr(request.state, "session", None)
    user = seen[1] if seen is not None and seen[0] == sid else users.find_session(engine, sid)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="login session missing or expired",
                            headers=UNAUTHORIZED)
    principal = Principal(0, user.role, list(user.regions), user.member_id, engine=engine)
    request.state.principal = principal
    request.state.session_user = user
    return principal
# --- end login sessions --------------------------------------------------------------------------


#: Endpoints that need no token (marked with :func:`public`).
_PUBLIC_ATTR = "__gridmap_public__"


def public(endpoint):
    """Mark a route function as open to callers without a token (only ``/health`` is)."""
    setattr(endpoint, _PUBLIC_ATTR, True)
    return endpoint


async def require_token(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """App-wide dependency (``FastAPI(dependencies=[Depends(require_token)])``): 401 without a valid
    token on every route not marked :func:`public`. The principal is left in ``request.state.principal``."""
    endpoint = request.scope.get("endpoint")
    if endpoint is not None and getattr(endpoint, _PUBLIC_ATTR, False):
        return
    await current_principal_async(request, credentials)


def require_roles(*roles: str):
    """Dependency factory: the caller's :class:`Principal` if its role is one of ``roles`` (or
    ``admin``), else 403. Use as ``principal: Principal = Depends(require_roles("leader", "planner"))``
    or in ``dependencies=[Depends(require_roles("admin"))]``."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown role(s) {unknown}; roles are {', '.join(ROLES)}")

    async def _check(principal: Principal = Depends(current_principal_async)) -> Principal:
        principal.require_role(*roles)
        return principal

    _check.__name__ = "require_" + "_".join(roles or ("admin",))
    return _check


def record_pii_read(engine: Engine, principal: Principal, what: str, ids: Iterable[Any],
                    detail: dict | None = None) -> int | None:
    """Record that ``principal`` read the personal data of records ``ids`` (of kind ``what``,
    e.g. ``"households"``) unmasked. Nothing is written when ``ids`` is empty. Only ids go into
    the log — never names, phones or id numbers. Returns the audit entry id (or None)."""
    ids = [str(i) for i in ids]
    if not ids:
        return None
    return store.record_audit(engine, token_id=principal.token_id or None, role=principal.role,
                              member_id=principal.member_id, action="pii_read", what=what, ids=ids, detail=detail)


def present_pii(engine: Engine, principal: Principal, what: str, records: list[Mapping], id_field: str,
                grid_field: str = "grid_code", own_ids: set[str] | None = None) -> list[dict]:
    """Mask residents' personal data in ``records`` where the caller may not see it, and audit the rest.

    Each record is shown unmasked when :meth:`Principal.allows_pii` for its grid (and, when
    ``own_ids`` is given — a responder's own linked households — its id is in ``own_ids``);
    otherwise ``name``/``phone``/``id_number`` are masked. The ids of records shown unmasked with
    personal data in them are written to the audit log in one entry.

    Parameters
    ----------
    records : list of mapping
        Rows as dicts (e.g. households) with ``id_field`` and ``grid_field`` keys.
    """
    out, unmasked = _mask_pii(principal, records, id_field, grid_field, own_ids)
    record_pii_read(engine, principal, what, unmasked)
    return out


def _mask_pii(principal: Principal, records: list[Mapping], id_field: str, grid_field: str,
              own_ids: set[str] | None) -> tuple[list[dict], list]:
    """The records masked as :func:`present_pii` says, and the ids of those shown unmasked with personal data."""
    out, unmasked = [], []
    for r in records:
        ok = principal.allows_pii(grid_code=r.get(grid_field))
        if ok and own_ids is not None and principal.role == "responder":
            ok = str(r.get(id_field)) in own_ids
        if ok:
            out.append(dict(r))
            if has_pii(r):
                unmasked.append(r.get(id_field))
        else:
            out.append(mask_record(r))
    return out, unmasked


# --- hot paths: the same checks in the event loop, without a thread-pool hop (issue 19) ----------
def _known_principal(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal | None:
    """The request's principal when no database is needed: resolved already, or built from the token the
    request gate (``api.guards``) looked up; None when :func:`current_principal` must decide."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    if credentials is None or not credentials.credentials:
        return None
    seen = getattr(request.state, "bearer", None)
    if seen is None or seen[1] is None or seen[0] != credentials.credentials.strip():
        return None
    rec = seen[1]
    principal = Principal(rec.token_id, rec.role, list(rec.regions), rec.member_id, engine=request.app.state.engine)
    request.state.principal = principal
    return principal


async def current_principal_async(request: Request,
                                  credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """:func:`current_principal` for async routes: no thread-pool hop when the request gate already found
    the token (the usual case: it is cached for ``geodata.store.auth.CACHE_SECONDS``). Sessions,
    unknown tokens and a database that could not be asked go through :func:`current_principal`, so
    the answers (401, 503, the failure count) are the same."""
    known = _known_principal(request, credentials)
    if known is not None:
        return known
    return await run_in_threadpool(current_principal, request, credentials)


async def caller(request: Request, *roles: str) -> Principal:
    """The caller as the app-wide gate (:func:`require_token`) resolved it, 403 unless its role is one of
    ``roles`` (when given). For hot routes: no dependency of their own to solve per request. Without
    the gate (an app built otherwise) the caller is resolved here, so nothing is let through unchecked."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        principal = await current_principal_async(request, await _bearer(request))
    if roles:
        principal.require_role(*roles)
    return principal


def hot_reader(request: Request) -> hot.Reader:
    """The app's async reader (:class:`geodata.store.pool.Reader`; its pool is opened by the app's lifespan)."""
    return request.app.state.hot_reader


async def resolve_scope(principal: Principal, reader: hot.Reader) -> Principal:
    """Expand the principal's regions in the event loop (cached as the synchronous expansion is), so that
    :meth:`Principal.covers` and friends need no database afterwards."""
    if principal._scope is None and not principal.everywhere:
        principal._scope = await hot.expand_regions(reader, principal.regions)
    return principal


async def present_pii_async(reader: hot.Reader, principal: Principal, what: str, records: list[Mapping],
                            id_field: str, grid_field: str = "grid_code",
                            own_ids: set[str] | None = None) -> list[dict]:
    """:func:`present_pii` in the event loop: the same masking, the same audit entry (ids only)."""
    await resolve_scope(principal, reader)
    out, unmasked = _mask_pii(principal, records, id_field, grid_field, own_ids)
    if unmasked:
        await hot.record_audit(reader, token_id=principal.token_id or None, role=principal.role,
                               member_id=principal.member_id, action="pii_read", what=what, ids=unmasked)
    return out
# --- end hot paths -------------------------------------------------------------------------------
