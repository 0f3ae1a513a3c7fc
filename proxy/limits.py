"""Usage limits per tenant: requests and tokens per minute, a cost budget per period.

Requests and tokens count per minute window, judged as a sliding window: the
current minute's count plus the previous minute's weighted by how much of it
still lies within the last 60 s (so a burst straddling a minute boundary cannot
pass twice the limit). Cost counts per fixed ``budget_period_s`` (a daily budget
resets at the period's start). A replica decides locally from the global totals
it last read plus what it counted since; every ``sync_interval_s`` it adds its
deltas to the shared SQL row of (tenant, kind, window) and reads every tenant's
totals of the current and previous windows back. So across N
replicas a limit can be overshot by at most what the others admit within one
sync interval. When the store is down each replica keeps enforcing on its own
counts (and re-sends them once the store is back), so limits fail soft, never closed.

Tokens: a prompt estimate (four characters a token) is charged when a request is
admitted, completion tokens from the backend's usage when it answers. Cost is
charged at the answering backend's configured prices; cache hits cost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter

from proxy.errors import RateLimited, Unavailable, body_for
from proxy.limits_store import CounterKey, OpsStore
from proxy.settings import LimitSettings

log = logging.getLogger("cachegate.limits")

Kind = Literal["requests", "tokens", "cost"]
KINDS: tuple[Kind, ...] = ("requests", "tokens", "cost")
MINUTE = 60.0
PRUNE_EVERY_S = 60.0
FIELDS = ("requests_per_minute", "tokens_per_minute", "budget_dollars")


@dataclass(frozen=True)
class TenantLimits:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    budget_dollars: float | None = None

    def __post_init__(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value >= 0):
                raise ValueError(f"{name} must be >= 0 or null, got {value!r}")

    def limit(self, kind: Kind) -> float | None:
        if kind == "requests":
            return self.requests_per_minute
        if kind == "tokens":
            return self.tokens_per_minute
        return self.budget_dollars

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Usage:
    """One tenant's counts in the current windows (global as last read, plus local)."""

    requests: float
    tokens: float
    cost: float


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """About four characters a token over the text the request sends."""
    messages = body.get("messages")
    chars = 0
    if isinstance(messages, list):
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                chars += sum(len(str(p.get("text", ""))) for p in content if isinstance(p, dict))
    else:
        prompt = body.get("prompt")
        chars = len(prompt) if isinstance(prompt, str) else len(str(prompt or ""))
    return max(1, math.ceil(chars / 4))


class Limiter:
    """Held on ``Services.limits``; :meth:`run` keeps it in step with the store."""

    def __init__(
        self,
        settings: LimitSettings,
        store: OpsStore | None,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.overrides: dict[str, dict[str, Any]] = {}
        self._global: dict[CounterKey, float] = {}  # (tenant, kind, window) -> total
        self._pending: dict[CounterKey, float] = {}
        self._sending: dict[CounterKey, float] = {}
        self.store_ok = True
        self.sync_failures = 0
        self._last_prune = 0.0
        self.rejections = Counter(
            "cachegate_limit_rejections",
            "Requests refused with 429 because a usage limit was reached.",
            ["tenant", "limit"],
            registry=registry,
        )

    # -- which limits apply -------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        s = self.settings
        return bool(
            s.requests_per_minute or s.tokens_per_minute or s.budget_dollars is not None
        ) or bool(s.tenants or self.overrides)

    def configured(self, tenant: str) -> TenantLimits:
        s = self.settings
        fields = {name: getattr(s, name) for name in FIELDS}
        per = s.tenants.get(tenant)
        if per is not None:
            fields.update({k: v for k, v in per.model_dump().items() if v is not None})
        return TenantLimits(**fields)

    def effective(self, tenant: str) -> TenantLimits:
        base = self.configured(tenant)
        override = self.overrides.get(tenant)
        if not override:
            return base
        return TenantLimits(**{**base.as_dict(), **override})

    # -- windows ------------------------------------------------------------------------
    def window_length(self, kind: Kind) -> float:
        return self.settings.budget_period_s if kind == "cost" else MINUTE

    def window(self, kind: Kind, now: float) -> int:
        return int(now // self.window_length(kind))

    def _count(self, tenant: str, kind: Kind, window: int) -> float:
        key = (tenant, kind, window)
        local = self._pending.get(key, 0.0) + self._sending.get(key, 0.0)
        return self._global.get(key, 0.0) + local

    def _counts(self, tenant: str, kind: Kind, now: float) -> tuple[float, float, float]:
        """(current window's count, previous window's, share of the previous still in)."""
        w = self.window(kind, now)
        current = self._count(tenant, kind, w)
        if kind == "cost":
            return current, 0.0, 0.0
        elapsed = now / MINUTE - w
        return current, self._count(tenant, kind, w - 1), 1.0 - elapsed

    def used(self, tenant: str, kind: Kind, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        current, previous, weight = self._counts(tenant, kind, now)
        return current + previous * weight

    def usage(self, tenant: str) -> Usage:
        now = self.clock()
        return Usage(*(self.used(tenant, k, now) for k in KINDS))

    def tenants_seen(self) -> set[str]:
        return {t for t, _, _ in self._global} | {t for t, _, _ in self._pending}

    # -- the request path ---------------------------------------------------------------
    def admit(self, tenant: str, prompt_tokens: int) -> None:
        """Counts a request and its prompt estimate, or raises RateLimited (counting nothing)."""
        if not self.enabled:
            return
        limits = self.effective(tenant)
        now = self.clock()
        asks: dict[Kind, float] = {"requests": 1.0, "tokens": float(prompt_tokens), "cost": 0.0}
        for kind in KINDS:
            limit = limits.limit(kind)
            if limit is None:
                continue
            used = self.used(tenant, kind, now)
            over = used >= limit if kind == "cost" else used + asks[kind] > limit
            if over:
                self._refuse(tenant, kind, limit, asks[kind], now)
        self._add(tenant, "requests", 1.0, now)
        self._add(tenant, "tokens", float(prompt_tokens), now)

    def charge(self, tenant: str, completion_tokens: int, cost: float) -> None:
        """Counts what an answer used (after it was sent)."""
        if not self.enabled:
            return
        now = self.clock()
        if completion_tokens > 0:
            self._add(tenant, "tokens", float(completion_tokens), now)
        if cost > 0:
            self._add(tenant, "cost", cost, now)

    def _add(self, tenant: str, kind: Kind, amount: float, now: float) -> None:
        key = (tenant, kind, self.window(kind, now))
        self._pending[key] = self._pending.get(key, 0.0) + amount

    def _refuse(self, tenant: str, kind: Kind, limit: float, ask: float, now: float) -> None:
        used = self.used(tenant, kind, now)
        retry_after = max(1.0, math.ceil(self._wait(tenant, kind, limit, ask, now)))
        name = {"requests": "requests_per_minute", "tokens": "tokens_per_minute"}.get(
            kind, "budget_dollars"
        )
        self.rejections.labels(tenant, name).inc()
        if kind == "cost":
            message = (
                f"tenant {tenant!r} has spent its budget of ${limit:g} for this period "
                f"(${used:.4f} used); retry after {retry_after:.0f} s"
            )
        else:
            message = (
                f"tenant {tenant!r} is over its limit of {limit:g} {kind} per minute "
                f"({used:g} used); retry after {retry_after:.0f} s"
            )
        raise RateLimited(message, retry_after=retry_after, limit=name)

    def _wait(self, tenant: str, kind: Kind, limit: float, ask: float, now: float) -> float:
        """Seconds until ``ask`` would fit if nothing else came in."""
        length = self.window_length(kind)
        to_next = (self.window(kind, now) + 1) * length - now
        current, previous, weight = self._counts(tenant, kind, now)
        if kind == "cost" or ask > limit:
            return to_next
        room = limit - ask
        if current <= room:  # the previous minute's share has to fade enough
            return max(0.0, (weight - (room - current) / previous) * length) if previous else 0.0
        # This minute's own count becomes the fading one next minute.
        return to_next + (1.0 - room / current) * length

    # -- keeping replicas in step -------------------------------------------------------
    async def sync(self) -> None:
        """Adds this replica's deltas to the shared rows and reads all totals back.
        Raises Unavailable (the deltas are kept and sent next time)."""
        if self.store is None:
            return
        now = self.clock()
        current: dict[str, int] = {k: self.window(k, now) for k in KINDS}
        windows = [(k, w) for k, w in current.items()] + [
            (k, w - 1) for k, w in current.items() if k != "cost"
        ]
        # Deltas of past windows are still sent (their rows are pruned later).
        self._sending, self._pending = self._pending, {}
        try:
            totals = await self.store.add_and_read(self._sending, windows, now)
            self.overrides = await self.store.overrides()
        except BaseException:
            for key, amount in self._sending.items():
                self._pending[key] = self._pending.get(key, 0.0) + amount
            self._sending = {}
            raise
        self._sending = {}
        self._global = totals
        if now - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now
            await self.store.prune_counters({k: w - 1 for k, w in current.items()})

    async def run(self, stopping: asyncio.Event) -> None:
        """Syncs every interval until ``stopping`` is set (then :meth:`close` sends the
        last deltas). It returns at its next wait rather than being cancelled: a query
        abandoned half-way would finish on the driver's thread after the loop closed."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.sync_interval_s)
            if not stopping.is_set():
                await self._sync_logged()

    async def close(self) -> None:
        """Sends the last deltas, unless the store is known to be down: a connection
        attempt failing right before the loop closes trips the driver's thread."""
        if self.store_ok:
            await self._sync_logged()

    async def _sync_logged(self) -> None:
        try:
            await self.sync()
        except Unavailable as exc:
            self.sync_failures += 1
            if self.store_ok:
                log.warning("limit counters not shared (enforcing locally): %s", exc)
            self.store_ok = False
            return
        if not self.store_ok:
            log.warning("limit counters shared again")
        self.store_ok = True


async def on_rate_limited(request: Request, exc: Exception) -> JSONResponse:
    """OpenAI's 429: the error envelope and a ``Retry-After`` header (whole seconds)."""
    assert isinstance(exc, RateLimited)
    status, body = body_for(exc)
    return JSONResponse(
        body, status_code=status, headers={"Retry-After": str(math.ceil(exc.retry_after))}
    )
