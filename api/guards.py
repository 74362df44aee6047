"""Guards of the HTTP API against hostile or broken requests (installed by ``api.app`` with :func:`install`).

- **Size**: bodies over ``GRIDMAP_MAX_BODY_BYTES`` (default 32 MiB) get 413. A pure ASGI middleware,
  so it acts before FastAPI parses anything: a declared ``Content-Length`` over the limit is refused
  at once, and a body sent without one (chunked) is counted as it streams in and cut off at the
  limit — an endpoint never holds more than the limit in memory.
- **NaN / Infinity**: Python's JSON parser accepts these non-standard tokens; a field holding one is
  refused with 422 naming the field (instead of a 500 when the error itself cannot be written as JSON).
- **JSON nested too deeply** to parse: 400 saying so (not a bare "error parsing the body").
- **Values the database refuses** (a NUL character in text, a number out of range …): 422 naming
  the reason, never a 500 — and never the statement's parameters, which may hold personal data.
"""

from __future__ import annotations

import json
import math
import os

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


def max_body_bytes() -> int:
    """The body limit in bytes: ``GRIDMAP_MAX_BODY_BYTES`` or 32 MiB."""
    raw = os.environ.get("GRIDMAP_MAX_BODY_BYTES")
    return int(raw) if raw else DEFAULT_MAX_BODY_BYTES


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware answering 413 to request bodies larger than ``max_bytes``."""

    def __init__(self, app, max_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def _reject(self, send) -> None:
        body = json.dumps({"detail": f"request body larger than the limit of {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
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
        if isinstance(value, (dict, list, tuple)):
            # Echo scalars only: a whole (possibly deeply nested or huge) object is not sent back;
            # ``loc`` already says where the problem is.
            err.pop("input", None)
        errors.append(_finite(err))
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})


async def http_error(request: Request, exc: StarletteHTTPException):
    """FastAPI's own answer, except that a body too deeply nested to parse says so."""
    if isinstance(exc.__cause__, RecursionError):
        return JSONResponse(status_code=400, content={
            "detail": "the JSON body is nested too deeply to parse (refused; send a flat object)"})
    return await http_exception_handler(request, exc)


async def data_error(request: Request, exc: DataError) -> JSONResponse:
    """422 for a value PostgreSQL refuses (class 22 errors), with PostgreSQL's reason only."""
    reason = str(getattr(exc, "orig", None) or "invalid value").strip().splitlines()[0]
    return JSONResponse(status_code=422, content={"detail": f"invalid value: {reason}"})


def install(app: FastAPI) -> None:
    """Add the size limit and the error handlers above to ``app``."""
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes())
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DataError, data_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
