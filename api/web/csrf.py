"""CSRF protection for requests authenticated by the login-session cookie (a pure ASGI middleware).

Every unsafe request (POST, PUT, PATCH, DELETE) that carries the session cookie and no bearer token
must carry the session's CSRF token (``geodata.store.users.csrf_token_for``) in the
``X-CSRF-Token`` header or in a ``csrf_token`` form field; otherwise it is refused with 403 before
any route runs, so nothing changes. ``/login`` checks its own token (there is no session yet).
"""

from __future__ import annotations

import hmac
import json

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import SESSION_COOKIE
from geodata.store.users import csrf_token_for

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class CSRFMiddleware:
    """Refuse cookie-authenticated unsafe requests without the right CSRF token (403)."""

    def __init__(self, app: ASGIApp, exempt_paths: tuple[str, ...] = ("/login",), max_body_bytes: int = 32 << 20):
        self.app = app
        self.exempt_paths = exempt_paths
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS or scope["path"] in self.exempt_paths:
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        session_id = Request(scope).cookies.get(SESSION_COOKIE)
        if not session_id or headers.get("authorization"):
            return await self.app(scope, receive, send)
        supplied = headers.get(CSRF_HEADER)
        if supplied is None and headers.get("content-type", "").startswith(FORM_TYPES):
            body = await _read_body(receive, self.max_body_bytes)
            if body is None:
                return await _refuse(send, 413, "request body too large")
            form = await Request(scope, _replay(body)).form()
            supplied = form.get(CSRF_FIELD)
            receive = _replay(body)
        if not isinstance(supplied, str) or not hmac.compare_digest(supplied, csrf_token_for(session_id)):
            return await _refuse(send, 403, "CSRF token missing or wrong (表单已过期，请刷新页面后重试)")
        await self.app(scope, receive, send)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
