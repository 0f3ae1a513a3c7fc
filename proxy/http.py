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


class AdminJsonMiddleware:
    """Reads every admin request body as JSON, whatever its Content-Type says.

    Admin bodies are always JSON, but ``curl -d`` labels them form data (and a bare
    client may send no type at all); FastAPI would then not parse them and refuse the
    request with a message about dictionaries. The OpenAI routes already read their
    bodies as JSON regardless; this makes the admin routes do the same. A form-encoded
    body (``a=b``) is then refused as invalid JSON, which it is for this API."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/admin" or path.startswith("/admin/"):
            headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
            if len(headers) < len(scope.get("headers", [])) or scope.get("method") != "GET":
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


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
        broken = next((e for e in exc.errors() if e.get("type") == "json_invalid"), None)
        if broken is not None:  # as the OpenAI routes word it (protocol.parse_json_body)
            at = broken["loc"][-1] if broken.get("loc") else "?"
            reason = (broken.get("ctx") or {}).get("error", broken.get("msg"))
            message = (
                f"could not parse the JSON body of your request ({reason} at character "
                f"{at}); the body must be a JSON object"
            )
            body = error_body(message, "invalid_request_error", code="invalid_json")
            return _json_error(request, 400, body)
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
