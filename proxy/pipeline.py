"""Request orchestration for chat completions and completions (steps 1-9 of DESIGN.md)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from fastapi.responses import JSONResponse, Response, StreamingResponse

from backends.backend import Backend, Tier, usage_of
from backends.errors import UpstreamError
from backends.pool import PoolReply
from backends.transport import BackendRequest
from proxy.auth import Principal
from proxy.errors import NotFound, spec_for
from proxy.normalise import Normalised, normalise_chat, normalise_completion
from proxy.protocol import ChatCompletionRequest, CompletionRequest, validate
from proxy.services import Services
from proxy.streaming import DONE_EVENT, StreamAccumulator, error_event

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
    started: float = 0.0

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
        return h


@dataclass(frozen=True)
class CacheControl:
    no_cache: bool = False  # skip the lookup
    no_store: bool = False  # skip the write

    @classmethod
    def parse(cls, header: str | None) -> CacheControl:
        directives = {d.strip().lower() for d in (header or "").split(",")}
        return cls(no_cache="no-cache" in directives, no_store="no-store" in directives)


@dataclass
class Prepared:
    """A validated request on its way to a backend."""

    body: dict[str, Any]
    stream: bool
    include_usage: bool
    alias: str
    pinned: Backend | None
    norm: Normalised


class Pipeline:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def handle(
        self,
        principal: Principal,
        body: dict[str, Any],
        *,
        endpoint: Endpoint,
        control: CacheControl,
        trace: Trace,
    ) -> Response:
        prepared = self._prepare(body, endpoint)
        primary, cross_tier = self._choose(prepared, trace)
        path = "/chat/completions" if endpoint == "chat" else "/completions"
        request = BackendRequest(path=path, body=prepared.body, stream=prepared.stream)
        stage_started = time.perf_counter()
        reply = await self.s.pool.call(primary, request, cross_tier=cross_tier)
        self._note_backend(reply, primary, trace, time.perf_counter() - stage_started)
        if reply.reply.events is not None:
            return self._stream_response(reply, prepared, trace)
        return self._json_response(reply, trace)

    # -- steps --------------------------------------------------------------

    def _prepare(self, body: dict[str, Any], endpoint: Endpoint) -> Prepared:
        if endpoint == "chat":
            req: ChatCompletionRequest | CompletionRequest = validate(ChatCompletionRequest, body)
            norm = normalise_chat(body)
        else:
            req = validate(CompletionRequest, body)
            norm = normalise_completion(body)
        pinned = self.s.pool.resolve(req.model)
        if req.model != "auto" and pinned is None:
            known = ", ".join(["auto", *self.s.pool.aliases])
            raise NotFound(
                f"The model '{req.model}' does not exist here. Available models: {known}",
                param="model",
                code="model_not_found",
            )
        opts = req.stream_options or {}
        return Prepared(
            body=body,
            stream=bool(req.stream),
            include_usage=bool(opts.get("include_usage")),
            alias=req.model,
            pinned=pinned,
            norm=norm,
        )

    def _choose(self, prepared: Prepared, trace: Trace) -> tuple[Backend, bool]:
        """The backend to try first, and whether failing over to the other tier is allowed.

        A pinned alias never silently changes tier: the client asked for that model.
        """
        pool = self.s.pool
        if prepared.pinned is not None:
            trace.route = "pinned"
            return prepared.pinned, False
        tier: Tier = "small" if pool.has_tier("small") else "large"
        trace.route = "router"
        other: Tier = "large" if tier == "small" else "small"
        if not pool.tier_available(tier) and pool.tier_available(other):
            tier, trace.route = other, "fallback"
        elif (
            pool.tier_overloaded(tier) and pool.has_tier(other) and not pool.tier_overloaded(other)
        ):
            tier, trace.route = other, "load"
        self.s.metrics.router_decisions.labels(tier, trace.route).inc()
        backend = pool.first_available(tier)
        assert backend is not None  # has_tier/tier_available checked above
        return backend, True

    def _note_backend(self, pr: PoolReply, primary: Backend, trace: Trace, ttft: float) -> None:
        trace.backend = pr.backend.name
        if pr.fell_back:
            trace.route = "fallback"
            self.s.metrics.fallbacks.labels(primary.tier, pr.backend.tier).inc()
        self.s.metrics.stage_duration.labels("backend_ttft").observe(ttft)

    def _record_usage(self, backend: Backend, body: dict[str, Any] | None) -> None:
        prompt, completion = usage_of(body)
        cost = backend.record_usage(prompt, completion)
        m = self.s.metrics
        m.backend_tokens.labels(backend.name, "prompt").inc(prompt)
        m.backend_tokens.labels(backend.name, "completion").inc(completion)
        m.backend_cost.labels(backend.name).inc(cost)
        m.backend_requests.labels(backend.name, backend.tier, "ok").inc()

    # -- responses ----------------------------------------------------------

    def _json_response(self, pr: PoolReply, trace: Trace) -> Response:
        body = pr.reply.json or {}
        self._record_usage(pr.backend, body)
        self._finish(trace, 200)
        return JSONResponse(body, headers=trace.headers())

    def _stream_response(self, pr: PoolReply, prepared: Prepared, trace: Trace) -> Response:
        return StreamingResponse(
            self._relay(pr, prepared, trace),
            media_type="text/event-stream",
            headers={**trace.headers(), "Cache-Control": "no-cache"},
        )

    async def _relay(self, pr: PoolReply, prepared: Prepared, trace: Trace) -> AsyncIterator[bytes]:
        events = pr.reply.events
        assert events is not None
        acc = StreamAccumulator(chat=trace.endpoint == "chat")
        status = 200
        try:
            async for data in events:
                acc.add(data)
                if acc.done:
                    break
                yield f"data: {data}\n\n".encode()
            if not acc.done:
                acc.broken = True
                yield error_event(
                    f"{pr.backend.name}: the backend's stream ended without [DONE]",
                    "upstream_error",
                    "backend_stream_broken",
                )
        except UpstreamError as exc:
            acc.broken = True
            status = spec_for(exc).status
            spec = spec_for(exc)
            yield error_event(str(exc), spec.type, spec.code)
        finally:
            await _aclose(events)
            await pr.reply.close()
        self._record_usage(pr.backend, {"usage": acc.usage} if acc.usage else None)
        self._finish(trace, status)
        yield DONE_EVENT

    def _finish(self, trace: Trace, status: int) -> None:
        m = self.s.metrics
        endpoint = f"/v1/{'chat/completions' if trace.endpoint == 'chat' else 'completions'}"
        m.requests.labels(
            endpoint, str(status), trace.category, trace.cache, trace.backend or ""
        ).inc()
        m.request_duration.labels(endpoint, trace.cache).observe(
            time.perf_counter() - trace.started
        )


async def _aclose(events: AsyncIterator[str]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()


def dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))
