"""Errors raised by ``proxy`` and the one table that maps every error to HTTP.

Hierarchy::

    ProxyError
    ├── SettingsError        configuration is invalid (start-up only)
    └── RequestError         the client's request cannot be served as sent
        ├── InvalidRequest   400 malformed JSON, bad field values
        ├── Unauthorized     401 missing or invalid API key
        ├── Forbidden        403 key valid but not allowed here
        ├── NotFound         404 unknown model, unknown entry
        ├── Conflict         409 the thing to create exists already
        ├── PayloadTooLarge  413 body over the configured limit
        ├── RateLimited      429 a usage limit is reached (carries retry_after)
        ├── NotCached        504 only-if-cached and nothing cached (not retried)
        └── Unavailable      503 a store the request needs is down or not configured

Errors from other packages (``backends``, ``cache`` ...) are mapped to HTTP in
:data:`STATUS_TABLE` as well, so each route only raises and never formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backends import (
    EmbedderError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamStreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from cache import CacheUnavailable, EntryNotFound, PolicyError
from classifier import ClassifierError, UnknownCategoryError
from router import RouterError


class ProxyError(Exception):
    """Base of every error raised by ``proxy``."""


class SettingsError(ProxyError):
    """The configuration is invalid; the message names the key."""


class RequestError(ProxyError):
    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequest(RequestError):
    pass


class Unauthorized(RequestError):
    pass


class Forbidden(RequestError):
    pass


class NotFound(RequestError):
    pass


class Conflict(RequestError):
    pass


class PayloadTooLarge(RequestError):
    pass


class Unavailable(RequestError):
    pass


class NotCached(RequestError):
    """``Cache-Control: only-if-cached`` and no cached answer: no backend is called."""


class RateLimited(RequestError):
    """A usage limit is reached; ``retry_after`` (seconds) becomes the Retry-After header."""

    def __init__(self, message: str, *, retry_after: float, limit: str) -> None:
        super().__init__(message, code="rate_limit_exceeded")
        self.retry_after = retry_after
        self.limit = limit


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    type: str
    code: str | None = None


# Most specific class first: the first isinstance match wins.
STATUS_TABLE: tuple[tuple[type[BaseException], ErrorSpec], ...] = (
    (InvalidRequest, ErrorSpec(400, "invalid_request_error")),
    (Unauthorized, ErrorSpec(401, "authentication_error", "invalid_api_key")),
    (Forbidden, ErrorSpec(403, "permission_error")),
    (NotFound, ErrorSpec(404, "invalid_request_error", "not_found")),
    (Conflict, ErrorSpec(409, "invalid_request_error", "conflict")),
    (PayloadTooLarge, ErrorSpec(413, "invalid_request_error", "payload_too_large")),
    (RateLimited, ErrorSpec(429, "rate_limit_error", "rate_limit_exceeded")),
    (Unavailable, ErrorSpec(503, "service_unavailable", "unavailable")),
    # RFC 9111 5.2.1.7: only-if-cached with nothing stored is answered 504.
    (NotCached, ErrorSpec(504, "cache_miss", "not_cached")),
    # Domain errors reaching a route (the admin API): values refused, names unknown.
    (PolicyError, ErrorSpec(400, "invalid_request_error", "invalid_policy")),
    (EntryNotFound, ErrorSpec(404, "invalid_request_error", "not_found")),
    (CacheUnavailable, ErrorSpec(503, "service_unavailable", "cache_unavailable")),
    (UnknownCategoryError, ErrorSpec(404, "invalid_request_error", "unknown_category")),
    (ClassifierError, ErrorSpec(400, "invalid_request_error", "invalid_category")),
    (RouterError, ErrorSpec(400, "invalid_request_error", "invalid_router_setting")),
    (UpstreamTimeout, ErrorSpec(504, "upstream_timeout", "backend_timeout")),
    (UpstreamUnavailable, ErrorSpec(503, "service_unavailable", "backend_unavailable")),
    (UpstreamStreamError, ErrorSpec(502, "upstream_error", "backend_stream_broken")),
    (UpstreamStatusError, ErrorSpec(502, "upstream_error", "backend_error")),
    (UpstreamError, ErrorSpec(502, "upstream_error", "backend_error")),
    (EmbedderError, ErrorSpec(500, "server_error", "embedder_failed")),
)

INTERNAL = ErrorSpec(500, "server_error", "internal_error")


def spec_for(exc: BaseException) -> ErrorSpec:
    for cls, spec in STATUS_TABLE:
        if isinstance(exc, cls):
            if isinstance(exc, UpstreamStatusError) and exc.status in (400, 404, 413, 422, 429):
                # The backend refused the request itself: pass its status through.
                return ErrorSpec(exc.status, "invalid_request_error", "backend_rejected")
            return spec
    return INTERNAL


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def body_for(exc: BaseException) -> tuple[int, dict[str, Any]]:
    spec = spec_for(exc)
    if spec is INTERNAL:
        return spec.status, error_body("internal server error", spec.type, code=spec.code)
    param = getattr(exc, "param", None)
    code = getattr(exc, "code", None) or spec.code
    return spec.status, error_body(str(exc), spec.type, param=param, code=code)
