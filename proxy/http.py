"""HTTP plumbing shared by the routes: request ids, body limits, error responses."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backends.errors import BackendError
from cache import CacheError
from classifier import ClassifierError
from proxy.errors import NotCached, PayloadTooLarge, ProxyError, body_for, error_body
from proxy.protocol import describe
from router import RouterError

log = logging.getLogger("cachegate.http")

REQUEST_ID = "x-request-id"


class RequestIdMiddleware:
    """Echoes the client's ``x-request-id`` (or makes one) on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                rid = value.decode("latin-1")[:128]
                break
        rid = rid or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


def request_id(request: Request) -> str:
    rid: str = request.state.request_id
    return rid


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing anything over ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_error(request: Request, status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    async def on_known(request: Request, exc: Exception) -> JSONResponse:
        status, body = body_for(exc)
        if isinstance(exc, NotCached):
            # Asking again cannot help, and the openai SDK retries a 5xx twice unless
            # told (it reads this header): a cache-only client gets its 504 at once.
            response = _json_error(request, status, body)
            response.headers["x-should-retry"] = "false"
            return response
        if status >= 500:
            log.warning("request failed: %s", exc)
        return _json_error(request, status, body)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        where, what = describe(exc.errors())
        loc = [str(p) for p in where if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        message = f"invalid value for '{param}': {what}" if param else what
        body = error_body(message, "invalid_request_error", param=param)
        return _json_error(request, 422, body)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _json_error(request, exc.status_code, error_body(str(exc.detail), type_, code=code))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug: logged with its traceback for us, never shown to the client.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        response = _json_error(
            request, 500, error_body("internal server error", "server_error", code="internal_error")
        )
        # Starlette re-raises after sending this, and uvicorn then drops the socket; a
        # client that kept the connection alive would see its next request reset.
        response.headers["connection"] = "close"
        return response

    for known in (ProxyError, BackendError, CacheError, ClassifierError, RouterError):
        app.add_exception_handler(known, on_known)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
