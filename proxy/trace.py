"""What happened to one request: response headers, metric labels, cache control."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Literal

from proxy.errors import InvalidRequest
from proxy.services import Services

Endpoint = Literal["chat", "completion"]
RouteReason = Literal["pinned", "router", "override", "fallback", "load"]


@dataclass
class Trace:
    """What happened to one request: becomes response headers and metric labels."""

    endpoint: Endpoint
    request_id: str
    cache: str = "bypass"
    category: str = "general"
    similarity: float | None = None
    backend: str | None = None
    route: RouteReason | None = None
    router_score: float | None = None
    examples: int = 0
    coalesced: str | None = None  # the request id whose in-flight answer this got
    started: float = field(default_factory=time.perf_counter)

    def headers(self) -> dict[str, str]:
        h = {
            "x-request-id": self.request_id,
            "x-cachegate-cache": self.cache,
            "x-cachegate-category": self.category,
        }
        if self.similarity is not None:
            h["x-cachegate-similarity"] = f"{self.similarity:.4f}"
        if self.backend is not None:
            h["x-cachegate-backend"] = self.backend
        if self.route is not None:
            h["x-cachegate-route"] = self.route
        if self.router_score is not None:
            h["x-cachegate-router-score"] = f"{self.router_score:.4f}"
        if self.examples:
            h["x-cachegate-examples"] = str(self.examples)
        if self.coalesced is not None:
            h["x-cachegate-coalesced"] = self.coalesced
        return h

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.endpoint == "chat" else "/v1/completions"


@dataclass(frozen=True)
class CacheControl:
    """The request's ``Cache-Control`` directives that cachegate honours (RFC 9111)."""

    no_cache: bool = False  # skip the lookup
    no_store: bool = False  # skip the write
    max_age_s: int | None = None  # serve only answers stored at most this long ago
    only_if_cached: bool = False  # a cached answer or 504, never a backend call

    @classmethod
    def parse(cls, header: str | None) -> CacheControl:
        """Raises InvalidRequest for a ``max-age`` that is not a number of seconds.
        Directives it does not know are ignored, as HTTP caches do."""
        directives: dict[str, str | None] = {}
        for part in (header or "").split(","):
            name, _, value = part.strip().partition("=")
            directives[name.strip().lower()] = value.strip().strip('"') if value else None
        max_age: int | None = None
        # A shared cache reads s-maxage before max-age (RFC 9111 5.2.2.10); as a
        # request directive it is LiteLLM's spelling of the same bound.
        for name in ("s-maxage", "max-age"):
            if name in directives:
                raw = directives[name] or ""
                # ASCII digits only: str.isdigit() accepts "²", which int() refuses.
                if not re.fullmatch(r"[0-9]{1,12}", raw):
                    raise InvalidRequest(
                        f"Cache-Control {name} must be a whole number of seconds, got {raw!r}",
                        param="cache-control",
                        code="invalid_cache_control",
                    )
                max_age = int(raw)
                break
        return cls(
            no_cache="no-cache" in directives,
            no_store="no-store" in directives,
            max_age_s=max_age,
            only_if_cached="only-if-cached" in directives,
        )


def finish(services: Services, trace: Trace, status: int) -> None:
    m = services.metrics
    m.requests.labels(
        trace.path, str(status), trace.category, trace.cache, trace.backend or ""
    ).inc()
    m.request_duration.labels(trace.path, trace.cache).observe(time.perf_counter() - trace.started)
