"""One configured model server: its transport, circuit breaker, retries and load figures."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from backends.circuit import CircuitBreaker, CircuitState
from backends.errors import (
    UpstreamError,
    UpstreamStatusError,
    UpstreamStreamError,
    UpstreamUnavailable,
)
from backends.transport import BackendReply, BackendRequest, Transport

Tier = Literal["small", "large"]


@dataclass(frozen=True)
class Price:
    input_per_1k: float = 0.0
    output_per_1k: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1k + completion_tokens * self.output_per_1k) / 1000


@dataclass(frozen=True)
class BackendSpec:
    name: str
    tier: Tier
    model: str
    price: Price = Price()
    max_concurrency: int = 64
    retries: int = 2
    ttft_slo_s: float = 2.0
    aliases: tuple[str, ...] = ()
    backoff_base_s: float = 0.05
    backoff_max_s: float = 1.0


@dataclass
class LoadFigures:
    """What the proxy has seen of a backend recently (EWMA over calls)."""

    in_flight: int = 0
    calls: int = 0
    errors: int = 0
    retries: int = 0
    ewma_ttft_s: float = 0.0
    ewma_latency_s: float = 0.0
    ewma_error_rate: float = 0.0
    ewma_throttle_rate: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    last_at: float | None = None  # when the last call finished (the backend's clock)
    alpha: float = field(default=0.2, repr=False)

    def observe(
        self,
        *,
        ttft_s: float | None,
        latency_s: float | None,
        ok: bool,
        throttled: bool,
        at: float | None = None,
    ) -> None:
        a = self.alpha
        self.last_at = at
        self.calls += 1
        if not ok:
            self.errors += 1
        self.ewma_error_rate += a * ((0.0 if ok else 1.0) - self.ewma_error_rate)
        self.ewma_throttle_rate += a * ((1.0 if throttled else 0.0) - self.ewma_throttle_rate)
        if ttft_s is not None:
            self.ewma_ttft_s += a * (ttft_s - self.ewma_ttft_s) if self.calls > 1 else ttft_s
        if latency_s is not None:
            self.ewma_latency_s += (
                a * (latency_s - self.ewma_latency_s) if self.calls > 1 else latency_s
            )


@dataclass(frozen=True)
class BackendStatus:
    name: str
    tier: Tier
    model: str
    circuit: CircuitState
    healthy: bool
    overloaded: bool
    in_flight: int
    max_concurrency: int
    calls: int
    errors: int
    ewma_ttft_s: float
    ewma_latency_s: float
    ewma_error_rate: float
    ewma_throttle_rate: float
    cost: float


class Backend:
    def __init__(
        self,
        spec: BackendSpec,
        transport: Transport,
        circuit: CircuitBreaker | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.spec = spec
        self.transport = transport
        self.circuit = circuit or CircuitBreaker()
        self.load = LoadFigures()
        self._clock = clock
        self._rng = rng or random.Random()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tier(self) -> Tier:
        return self.spec.tier

    def status(self) -> BackendStatus:
        state = self.circuit.state
        return BackendStatus(
            name=self.name,
            tier=self.tier,
            model=self.spec.model,
            circuit=state,
            healthy=self.circuit.available(),
            overloaded=self.overloaded,
            in_flight=self.load.in_flight,
            max_concurrency=self.spec.max_concurrency,
            calls=self.load.calls,
            errors=self.load.errors,
            ewma_ttft_s=self.load.ewma_ttft_s,
            ewma_latency_s=self.load.ewma_latency_s,
            ewma_error_rate=self.load.ewma_error_rate,
            ewma_throttle_rate=self.load.ewma_throttle_rate,
            cost=self.load.cost,
        )

    def idle_for(self) -> float:
        """Seconds since the last call finished (0 when one is in flight or none happened)."""
        if self.load.in_flight or self.load.last_at is None:
            return 0.0
        return max(0.0, self._clock() - self.load.last_at)

    @property
    def overloaded(self) -> bool:
        return (
            self.load.in_flight >= self.spec.max_concurrency
            or self.load.ewma_ttft_s > self.spec.ttft_slo_s
            or self.load.ewma_throttle_rate > 0.5
        )

    def record_usage(self, prompt_tokens: int, completion_tokens: int) -> float:
        cost = self.spec.price.cost(prompt_tokens, completion_tokens)
        self.load.prompt_tokens += prompt_tokens
        self.load.completion_tokens += completion_tokens
        self.load.cost += cost
        return cost

    async def call(self, request: BackendRequest) -> BackendReply:
        """Send with retries; a stream is returned only once its first event arrived.

        Retries cover connection errors, 429 and 5xx, and a stream that broke
        before its first event: all of these happen before any byte has gone
        to the client, so a retry cannot duplicate output.
        """
        body = dict(request.body)
        body["model"] = self.spec.model
        request = replace(request, body=body)
        attempt = 0
        while True:
            if not self.circuit.allow():
                raise UpstreamUnavailable(f"{self.name}: circuit open", backend=self.name)
            started = self._clock()
            self.load.in_flight += 1
            try:
                reply = await self.transport.send(request)
                if reply.events is not None:
                    reply = await self._prefetch_first(reply, started)
            except UpstreamError as exc:
                self.load.in_flight -= 1
                throttled = isinstance(exc, UpstreamStatusError) and exc.status == 429
                retryable = _retryable(exc)
                if retryable or throttled:
                    self.circuit.record_failure()
                else:
                    # A 4xx is the request's fault, not the backend's health.
                    self.circuit.record_success()
                self.load.observe(
                    ttft_s=None, latency_s=None, ok=False, throttled=throttled, at=self._clock()
                )
                if not retryable or attempt >= self.spec.retries:
                    raise
                attempt += 1
                self.load.retries += 1
                await asyncio.sleep(self._backoff(attempt))
                continue
            except BaseException:
                self.load.in_flight -= 1
                raise
            if reply.events is None:
                self.load.in_flight -= 1
                elapsed = self._clock() - started
                self.circuit.record_success()
                self.load.observe(
                    ttft_s=elapsed, latency_s=elapsed, ok=True, throttled=False, at=self._clock()
                )
            return reply

    async def _prefetch_first(self, reply: BackendReply, started: float) -> BackendReply:
        assert reply.events is not None
        events = reply.events
        try:
            first = await anext(events)
        except StopAsyncIteration:
            await reply.close()
            raise UpstreamStreamError(
                f"{self.name}: stream ended before any data", backend=self.name
            ) from None
        except UpstreamError:
            await reply.close()
            raise
        ttft = self._clock() - started
        return replace(reply, events=self._tracked(first, events, started, ttft))

    async def _tracked(
        self, first: str, events: AsyncIterator[str], started: float, ttft: float
    ) -> AsyncIterator[str]:
        outcome: bool | None = None  # None: the consumer stopped early (not the backend's fault)
        try:
            yield first
            async for event in events:
                yield event
            outcome = True
        except UpstreamError:
            outcome = False
            raise
        finally:
            self.load.in_flight -= 1
            if outcome is True:
                self.circuit.record_success()
            elif outcome is False:
                self.circuit.record_failure()
            if outcome is not None:
                now = self._clock()
                self.load.observe(
                    ttft_s=ttft, latency_s=now - started, ok=outcome, throttled=False, at=now
                )

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.spec.backoff_max_s, self.spec.backoff_base_s * 2.0 ** (attempt - 1))
        jitter: float = self._rng.uniform(0, ceiling / 2)
        return ceiling / 2 + jitter  # "equal jitter"

    async def aclose(self) -> None:
        close = getattr(self.transport, "aclose", None)
        if close is not None:
            await close()


def _retryable(exc: UpstreamError) -> bool:
    if isinstance(exc, UpstreamStatusError):
        return exc.retryable
    return isinstance(exc, UpstreamUnavailable | UpstreamStreamError)


#: More tokens than any answer has: a figure above it is a backend's bug, counted as 0.
MAX_TOKENS = 10**9


def usage_of(body: dict[str, Any] | None) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) from an OpenAI body's ``usage``; 0 for a
    figure that is absent or not a count (negative, fractional, a string, huge):
    these feed counters, prices and integer columns."""
    usage = (body or {}).get("usage") or {}
    if not isinstance(usage, dict):
        return 0, 0
    return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))


def _count(value: Any) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS
    return value if ok else 0
