"""What happened to one request: response headers, metric labels, cache control."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

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
    no_cache: bool = False  # skip the lookup
    no_store: bool = False  # skip the write

    @classmethod
    def parse(cls, header: str | None) -> CacheControl:
        directives = {d.strip().lower() for d in (header or "").split(",")}
        return cls(no_cache="no-cache" in directives, no_store="no-store" in directives)


def finish(services: Services, trace: Trace, status: int) -> None:
    m = services.metrics
    m.requests.labels(
        trace.path, str(status), trace.category, trace.cache, trace.backend or ""
    ).inc()
    m.request_duration.labels(trace.path, trace.cache).observe(time.perf_counter() - trace.started)
