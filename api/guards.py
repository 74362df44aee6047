"""Guards of the HTTP API against hostile or broken requests (installed by ``api.app`` with :func:`install`).

- **Token before body**: the bearer token is checked before the body is read. A request without a
  valid token may send at most ``anonymous_body_bytes`` (64 KiB), so an unauthenticated 30 MB body
  is refused (413) long before the route's 401; one with a token may send ``max_body_bytes``
  (32 MiB). Pure ASGI middleware, so it acts before FastAPI parses anything: a declared
  ``Content-Length`` over the limit is refused at once, and a body sent without one (chunked) is
  counted as it streams in and cut off at the limit.
- **Repeated 401s** from one client address (``auth_failures_per_minute``) get 429 with
  ``Retry-After`` until the minute has passed (requests with a valid token still go through).
- **Lone UTF-16 surrogates** (``"\ud800"``) in a JSON body: 422 naming the field, before any code
  sees the value (so it never reaches a traceback, a log or the database).
- **Echoes**: a 4xx body quotes at most :data:`ECHO_CHARS` characters of any input.
- **NaN / Infinity**: Python's JSON parser accepts these non-standard tokens; a field holding one is
  refused with 422 naming the field (instead of a 500 when the error itself cannot be written as JSON).
- **JSON nested too deeply** to parse: 400 saying so (not a bare "error parsing the body").
- **Values the database refuses** (a NUL character in text, a number out of range …): 422 naming
  the reason, never a 500 — and never the statement's parameters, which may hold personal data.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_ANONYMOUS_BODY_BYTES = 64 * 1024
#: Most characters of a caller's input quoted back in an error.
ECHO_CHARS = 200
FAILURE_WINDOW_S = 60.0
#: Named exceptions to the anonymous limit: residents report without an account, with up to three
#: photos of 5 MB (api/web/report.py; the route checks each photo again).
ANONYMOUS_UPLOADS = {("POST", "/report"): 3 * 5 * 1024 * 1024 + 64 * 1024}


async def _send_json(send, status: int, content: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(content).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *headers]})
    await send({"type": "http.response.body", "body": body})


class AuthFailures:
    """Failed token checks per client address over the last minute (in this process).

    A sliding window of failure times per address; an address at ``per_minute`` failures is told to
    wait until its oldest failure leaves the window.
    """

    def __init__(self, per_minute: int):
        self.per_minute = int(per_minute)
        self._times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._times.setdefault(address, deque())
        while times and now - times[0] >= FAILURE_WINDOW_S:
            times.popleft()
        return times

    def record(self, address: str) -> None:
        """Count one failed token check from ``address``."""
        now = time.monotonic()
        with self._lock:
            if len(self._times) > 100_000:  # bound the memory a flood of addresses can take
                self._times.clear()
            self._recent(address, now).append(now)

    def retry_after_s(self, address: str) -> int:
        """Seconds ``address`` must wait before its next unauthenticated request (0: none)."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(address, now)
            if len(times) < self.per_minute:
                return 0
            return max(1, math.ceil(FAILURE_WINDOW_S - (now - times[0])))


def client_address(scope) -> str:
    """The client's address of an ASGI scope ("?" when the server gives none)."""
    client = scope.get("client")
    return str(client[0]) if client else "?"


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: the token is checked first, then bodies larger than the caller's limit get 413.

    Parameters
    ----------
    max_bytes : int
        Limit for a request that ``authenticated`` accepts.
    anonymous_bytes : int
        Limit for every other request (no token, a wrong one, or a public route).
    authenticated : async callable(scope) -> bool, optional
        Whether the request carries valid credentials (default: none does).
    failures : AuthFailures, optional
        Unauthenticated requests from an address with too many recent 401s get 429.
    """

    def __init__(self, app, max_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 anonymous_bytes: int = DEFAULT_ANONYMOUS_BODY_BYTES,
                 authenticated: Callable[[dict], Awaitable[bool]] | None = None,
                 failures: AuthFailures | None = None):
        self.app = app
        self.max_bytes = int(max_bytes)
        self.anonymous_bytes = min(int(anonymous_bytes), self.max_bytes)
        self.authenticated = authenticated
        self.failures = failures

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        known = self.authenticated is not None and await self.authenticated(scope)
        if not known and self.failures is not None:
            wait = self.failures.retry_after_s(client_address(scope))
            if wait:
                return await _send_json(send, 429, {"detail": "too many failed token checks; retry later"},
                                        [(b"retry-after", str(wait).encode())])
        limit = self.max_bytes if known else ANONYMOUS_UPLOADS.get((scope["method"], scope["path"]), self.anonymous_bytes)
        await _LimitedRequest(self.app, limit, known)(scope, receive, send)


class _LimitedRequest:
    """One request under a body limit (413 above it)."""

    def __init__(self, app, max_bytes: int, known: bool):
        self.app = app
        self.max_bytes = max_bytes
        self.known = known

    async def _reject(self, send) -> None:
        why = "" if self.known else " for a request without a valid token"
        await _send_json(send, 413, {"detail": f"request body larger than the limit of {self.max_bytes} bytes{why}"},
                         [(b"connection", b"close")])

    async def __call__(self, scope, receive, send):
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    body = b'{"detail":"invalid Content-Length"}'
                    await send({"type": "http.response.start", "status": 400,
                                "headers": [(b"content-type", b"application/json")]})
                    await send({"type": "http.response.body", "body": body})
                    return
                if declared > self.max_bytes:
                    return await self._reject(send)
                break

        seen = 0
        exceeded = False
        replied = False

        async def counting_receive():
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise _TooLarge()
            return message

        async def guarded_send(message):
            # If the endpoint turned the cut-off into its own error (FastAPI answers 400 to a body it
            # could not read), answer 413 instead: the size is the problem.
            nonlocal replied
            if exceeded:
                if not replied:
                    replied = True
                    await self._reject(send)
                return
            if message["type"] == "http.response.start":
                replied = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if not replied:
                replied = True
                await self._reject(send)


_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate_path(value, path: tuple = ()) -> tuple | None:
    """The location (keys and indexes) of the first text holding a lone UTF-16 surrogate in parsed
    JSON, or None. (``json.loads`` joins a valid pair into one character, so any surrogate left is lone.)"""
    if isinstance(value, str):
        return path if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATE.search(key):
                return path + (_SURROGATE.sub("?", key),)
            found = lone_surrogate_path(item, path + (key,))
            if found is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = lone_surrogate_path(item, path + (i,))
            if found is not None:
                return found
    return None


class LoneSurrogates:
    """ASGI middleware: a JSON body with a lone UTF-16 surrogate escape (``"\\ud800"``) gets 422 naming
    the field. Such text cannot be stored or written as UTF-8, and would otherwise end in a 500 with the
    value in the traceback. The body (already size-limited) is read, checked and handed on unchanged."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or b"json" not in dict(scope.get("headers", ())).get(b"content-type", b""):
            return await self.app(scope, receive, send)
        messages, chunks = [], []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if _ESCAPED_SURROGATE.search(body):
            where = _surrogate_location(body)
            if where is not None:
                return await _send_json(send, 422, {"detail": [{
                    "loc": ["body", *where], "type": "lone_surrogate",
                    "msg": "text holds a lone UTF-16 surrogate escape (\\ud800–\\udfff), which is not a character"}]})
        replay = iter(messages)

        async def replayed():
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)


def _surrogate_location(body: bytes) -> tuple | None:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON: FastAPI's own error answers it
    return lone_surrogate_path(parsed)


#: Content-Security-Policy of HTML answers that set none themselves. Folium maps need inline
#: scripts and styles, and tile images from the configured tile server.
DEFAULT_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data: blob: https:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; "
               "base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


class SecurityHeaders:
    """ASGI middleware: ``Cache-Control: no-store`` on every answer that sets no caching itself (any
    answer may carry personal data; static assets and tiles set their own), ``nosniff`` and
    ``Referrer-Policy`` everywhere, and CSP / ``X-Frame-Options`` on HTML."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = {k.lower() for k, _ in headers}
                extra = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"no-referrer")]
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html"):
                    extra += [(b"content-security-policy", DEFAULT_CSP.encode()), (b"x-frame-options", b"DENY")]
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def bearer_checker(engine) -> Callable[[dict], Awaitable[bool]]:
    """An async ``scope -> bool``: whether the request's bearer token is a live one in ``engine``
    (looked up in a worker thread; an unreachable database counts as no token — the route answers 503)."""
    from anyio import to_thread

    from geodata.store import auth as store
    from geodata.store.pool import cached_token

    cache_key = str(engine.url)  # rendering the URL per request cost a tenth of the check

    async def check(scope) -> bool:
        headers = dict(scope.get("headers", ()))
        raw = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = raw.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token.startswith(store.TOKEN_PREFIX) or len(token) > 200:
            cookie = headers.get(b"cookie")
            return cookie is not None and await _live_session(engine, cookie, scope)
        # A cached token needs no thread-pool hop (issue 19: the hop cost more than the query).
        record = cached_token(cache_key, token)
        try:
            record = record or await to_thread.run_sync(store.find_token, engine, token)
        except Exception:
            return False
        # Handed on to api.auth.current_principal (request.state), so a request costs one lookup.
        scope.setdefault("state", {})["bearer"] = (token, record)
        return record is not None

    return check


async def _live_session(engine, cookie_header: bytes, scope) -> bool:
    """Whether the request carries a live login-session cookie (a logged-in browser gets the
    authenticated body limit too: roster uploads and photos come from pages). The account found is
    handed on to :func:`api.auth.session_principal` (``request.state.session``), so a page request
    looks its session up once."""
    from http.cookies import CookieError, SimpleCookie

    from anyio import to_thread

    from api.auth import SESSION_COOKIE
    from geodata.store import users

    try:
        jar = SimpleCookie(cookie_header.decode("latin-1"))
    except CookieError:
        return False
    morsel = jar.get(SESSION_COOKIE)
    if morsel is None or not morsel.value or len(morsel.value) > 200:
        return False
    try:
        user = await to_thread.run_sync(users.find_session, engine, morsel.value)
    except Exception:
        return False
    scope.setdefault("state", {})["session"] = (morsel.value, user)
    return user is not None


def cap_echo(value):
    """``value`` with every text longer than :data:`ECHO_CHARS` cut there (marked with an ellipsis)."""
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        return value[:ECHO_CHARS] + "…"
    if isinstance(value, dict):
        return {k: cap_echo(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [cap_echo(v) for v in value]
    return value


def _finite(value):
    """``value`` with non-finite floats replaced by their names (so the error can be sent as JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with FastAPI's usual ``detail`` list; a NaN/Infinity input is named as such."""
    errors = []
    for err in exc.errors():
        err = dict(err)
        value = err.get("input")
        if isinstance(value, float) and not math.isfinite(value):
            err["msg"] = "must be a finite number (NaN and Infinity are not allowed)"
            err["type"] = "finite_number"
            err.pop("ctx", None)
        if isinstance(value, (dict, list, tuple, bytes)):
            # Echo scalars only: a whole (possibly deeply nested or huge) object is not sent back;
            # ``loc`` already says where the problem is.
            err.pop("input", None)
        err.pop("url", None)
        errors.append(cap_echo(_finite(err)))
    return JSONResponse(status_code=422, content={"detail": cap_echo(jsonable_encoder(errors))})


async def http_error(request: Request, exc: StarletteHTTPException):
    """FastAPI's own answer, except that a body too deeply nested to parse says so."""
    if isinstance(exc.__cause__, RecursionError):
        return JSONResponse(status_code=400, content={
            "detail": "the JSON body is nested too deeply to parse (refused; send a flat object)"})
    if isinstance(exc.detail, str) and len(exc.detail) > 2 * ECHO_CHARS:
        exc = StarletteHTTPException(exc.status_code, detail=cap_echo(exc.detail), headers=exc.headers)
    return await http_exception_handler(request, exc)


async def data_error(request: Request, exc: DataError) -> JSONResponse:
    """422 for a value PostgreSQL refuses (class 22 errors), with PostgreSQL's reason only."""
    reason = str(getattr(exc, "orig", None) or "invalid value").strip().splitlines()[0]
    return JSONResponse(status_code=422, content={"detail": cap_echo(f"invalid value: {reason}")})


def install(app: FastAPI, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES,
            anonymous_bytes: int = DEFAULT_ANONYMOUS_BODY_BYTES, auth_failures_per_minute: int = 20) -> None:
    """Add the guards above to ``app`` (whose ``state.engine`` holds the tokens).

    The failure counter is ``app.state.auth_failures``: :func:`api.auth.current_principal` records
    each 401 there.
    """
    app.state.auth_failures = AuthFailures(auth_failures_per_minute)
    # Starlette runs the last middleware added first: headers → token and size → surrogates → app.
    app.add_middleware(LoneSurrogates)
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes, anonymous_bytes=anonymous_bytes,
                       authenticated=bearer_checker(app.state.engine), failures=app.state.auth_failures)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DataError, data_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
