"""Errors raised by ``backends``.

Hierarchy::

    BackendError
    ├── EmbedderError            the embedding model could not be loaded or run
    └── UpstreamError            a model server call failed
        ├── UpstreamUnavailable  connection refused/reset, circuit open, all tiers down
        │   └── UpstreamTimeout  connect/read/total timeout
        ├── UpstreamStatusError  the server answered with an HTTP error status
        └── UpstreamStreamError  the stream broke after it had started

Third-party errors (aiohttp, ONNX Runtime) are translated into these at the
edge with ``raise ... from exc``; nothing outside ``backends`` sees them.
"""

from __future__ import annotations


class BackendError(Exception):
    """Base of every error raised by ``backends``."""


class EmbedderError(BackendError):
    """The embedding model could not be loaded or failed to run."""


class UpstreamError(BackendError):
    """A call to a model server failed."""

    def __init__(self, message: str, *, backend: str) -> None:
        super().__init__(message)
        self.backend = backend


class UpstreamUnavailable(UpstreamError):
    """The server could not be reached (or its circuit is open)."""


class UpstreamTimeout(UpstreamUnavailable):
    """The server did not answer in time."""


class UpstreamStatusError(UpstreamError):
    """The server answered with an HTTP error status."""

    def __init__(self, message: str, *, backend: str, status: int, body: bytes = b"") -> None:
        super().__init__(message, backend=backend)
        self.status = status
        self.body = body

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500


class UpstreamStreamError(UpstreamError):
    """The response stream broke after the first byte had been received."""
