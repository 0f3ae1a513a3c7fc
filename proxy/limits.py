"""Usage limits per tenant and per API key: requests and tokens per minute, a cost
budget per period, and input bounds.

A request must pass its key's limits and its tenant's: each is counted apart
(scope ``key`` or ``tenant``) and a request admitted is counted in both. A
tenant's limits are the ``limits`` defaults, then ``limits.tenants.<name>``, then
an admin override; a key's are ``limits.key_defaults``, then ``limits.keys.<id>``,
then an admin override (field by field; ``null`` in an override is unlimited).
Input bounds (messages, characters, ``max_tokens``) of a tenant or key only lower
the deployment's ``limits.max_*``, which every request meets (``proxy.pipeline``).

Requests and tokens count per minute window, judged as a sliding window: the
current minute's count plus the previous minute's weighted by how much of it
still lies within the last 60 s (so a burst straddling a minute boundary cannot
pass twice the limit). Cost counts per fixed ``budget_period_s`` (a daily budget
resets at the period's start). A replica decides locally from the global totals
it last read plus what it counted since; every ``sync_interval_s`` it adds its
deltas to the shared SQL row of (scope, subject, kind, window) and reads every
subject's totals of the current and previous windows back. So across N
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
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter

from proxy.errors import InvalidRequest, RateLimited, Unavailable, body_for
from proxy.limits_store import CounterKey, OpsStore
from proxy.settings import LimitSettings, TenantLimitSettings

log = logging.getLogger("cachegate.limits")

Kind = Literal["requests", "tokens", "cost"]
Scope = Literal["tenant", "key"]
Subject = tuple[Scope, str]
KINDS: tuple[Kind, ...] = ("requests", "tokens", "cost")
SCOPES: tuple[Scope, ...] = ("tenant", "key")
MINUTE = 60.0
PRUNE_EVERY_S = 60.0
EFFECTIVE_CACHE = 100_000  # subjects whose effective limits are remembered between syncs
RATE_FIELDS = ("requests_per_minute", "tokens_per_minute", "budget_dollars")
BOUND_FIELDS = ("max_messages", "max_total_chars", "max_tokens_ceiling")
FIELDS = RATE_FIELDS + BOUND_FIELDS
LIMIT_NAME: dict[Kind, str] = {
    "requests": "requests_per_minute",
    "tokens": "tokens_per_minute",
    "cost": "budget_dollars",
}


@dataclass(frozen=True)
class Limits:
    """One tenant's or key's limits; None is unlimited (or, for a bound, the deployment's)."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    budget_dollars: float | None = None
    max_messages: int | None = None
    max_total_chars: int | None = None
    max_tokens_ceiling: int | None = None

    def __post_init__(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            low = 1 if name in BOUND_FIELDS else 0
            if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
                raise ValueError(f"{name} must be >= {low} or null, got {value!r}")
            if name != "budget_dollars" and not float(value).is_integer():
                raise ValueError(f"{name} must be a whole number, got {value!r}")

    def limit(self, kind: Kind) -> float | None:
        if kind == "requests":
            return self.requests_per_minute
        if kind == "tokens":
            return self.tokens_per_minute
        return self.budget_dollars

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


TenantLimits = Limits  # the name before keys had limits of their own


@dataclass(frozen=True)
class Usage:
    """One subject's counts in the current windows (global as last read, plus local)."""

    requests: float
    tokens: float
    cost: float


class LimitExceeded(RateLimited):
    """A 429 that also names the scope (tenant or key) whose limit was reached."""

    def __init__(self, message: str, *, retry_after: float, limit: str, scope: Scope) -> None:
        super().__init__(message, retry_after=retry_after, limit=limit)
        self.scope = scope


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


def _who(subject: Subject, tenant: str) -> str:
    scope, name = subject
    return f"tenant {name!r}" if scope == "tenant" else f"key {name!r} (tenant {tenant!r})"


def check_bounds(body: Mapping[str, Any], limits: Limits, who: str) -> None:
    """Refuses (400) a request over a tenant's or key's input bounds. Runs on the raw
    body before validation, so only values of the right type are judged here; the
    deployment's bounds are checked on the validated request (``proxy.pipeline``)."""
    messages = body.get("messages")
    count = len(messages) if isinstance(messages, list) else 0
    if limits.max_messages is not None and count > limits.max_messages:
        raise InvalidRequest(
            f"{count} messages is over {who}'s limit of {limits.max_messages}",
            param="messages",
            code="too_many_messages",
        )
    if limits.max_total_chars is not None:
        total = len(json.dumps(messages if messages is not None else body.get("prompt", "")))
        if total > limits.max_total_chars:
            raise InvalidRequest(
                f"the input has {total} characters, over {who}'s limit of {limits.max_total_chars}",
                param="messages" if messages is not None else "prompt",
                code="input_too_long",
            )
    ceiling = limits.max_tokens_ceiling
    for param in ("max_completion_tokens", "max_tokens"):
        asked = body.get(param)
        if ceiling is not None and isinstance(asked, int) and asked > ceiling:
            raise InvalidRequest(
                f"{param}={asked} is over {who}'s ceiling of {ceiling}",
                param=param,
                code="max_tokens_too_large",
            )


def _set_fields(s: TenantLimitSettings) -> dict[str, Any]:
    return {k: v for k, v in s.model_dump().items() if v is not None}


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
        self.overrides: dict[Subject, dict[str, Any]] = {}
        self._effective: dict[Subject, Limits] = {}  # emptied whenever overrides change
        self._global: dict[CounterKey, float] = {}  # (scope, subject, kind, window) -> total
        self._pending: dict[CounterKey, float] = {}
        self._sending: dict[CounterKey, float] = {}
        self.store_ok = True
        self.sync_failures = 0
        self._last_prune = 0.0
        s = settings
        self._configured = bool(
            s.requests_per_minute or s.tokens_per_minute or s.budget_dollars is not None
        ) or bool(s.tenants or s.keys or _set_fields(s.key_defaults))
        self.rejections = Counter(
            "cachegate_limit_rejections",
            "Requests refused with 429 because a tenant's usage limit was reached.",
            ["tenant", "limit"],
            registry=registry,
        )
        self.key_rejections = Counter(
            "cachegate_key_limit_rejections",
            "Requests refused with 429 because an API key's usage limit was reached "
            "(key: its non-secret id).",
            ["key", "tenant", "limit"],
            registry=registry,
        )

    # -- which limits apply -------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self._configured or bool(self.overrides)

    def defaults(self, scope: Scope) -> Limits:
        """What a tenant or key not named in the configuration gets."""
        s = self.settings
        if scope == "tenant":
            return Limits(**{f: getattr(s, f) for f in RATE_FIELDS})
        return Limits(**_set_fields(s.key_defaults))

    def configured(self, scope: Scope, name: str) -> Limits:
        per = (self.settings.tenants if scope == "tenant" else self.settings.keys).get(name)
        base = self.defaults(scope)
        if per is None:
            return base
        return Limits(**{**base.as_dict(), **_set_fields(per)})

    def effective(self, scope: Scope, name: str) -> Limits:
        cached = self._effective.get((scope, name))
        if cached is not None:
            return cached
        limits = base = self.configured(scope, name)
        override = self.overrides.get((scope, name))
        if override:
            try:
                limits = Limits(**{**base.as_dict(), **override})
            except (TypeError, ValueError) as exc:
                # Only when the configuration changed under a stored override.
                log.error("admin limits of %s %r no longer valid, using configured: %s",
                          scope, name, exc)  # fmt: skip
        if len(self._effective) < EFFECTIVE_CACHE:
            self._effective[(scope, name)] = limits
        return limits

    def set_override(self, subject: Subject, fields: dict[str, Any] | None) -> None:
        """This replica at once (the others pick it up on their next sync)."""
        overrides = dict(self.overrides)
        if fields is None:
            overrides.pop(subject, None)
        else:
            overrides[subject] = fields
        self._set_overrides(overrides)

    def _set_overrides(self, overrides: dict[Subject, dict[str, Any]]) -> None:
        self.overrides = overrides
        self._effective = {}

    def subjects_seen(self, scope: Scope) -> set[str]:
        keys = set(self._global) | set(self._pending)
        return {name for sc, name, _, _ in keys if sc == scope}

    # -- windows ------------------------------------------------------------------------
    def window_length(self, kind: Kind) -> float:
        return self.settings.budget_period_s if kind == "cost" else MINUTE

    def window(self, kind: Kind, now: float) -> int:
        return int(now // self.window_length(kind))

    def _count(self, subject: Subject, kind: Kind, window: int) -> float:
        key = (*subject, kind, window)
        local = self._pending.get(key, 0.0) + self._sending.get(key, 0.0)
        return self._global.get(key, 0.0) + local

    def _counts(self, subject: Subject, kind: Kind, now: float) -> tuple[float, float, float]:
        """(current window's count, previous window's, share of the previous still in)."""
        w = self.window(kind, now)
        current = self._count(subject, kind, w)
        if kind == "cost":
            return current, 0.0, 0.0
        elapsed = now / MINUTE - w
        return current, self._count(subject, kind, w - 1), 1.0 - elapsed

    def used(self, subject: Subject, kind: Kind, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        current, previous, weight = self._counts(subject, kind, now)
        return current + previous * weight

    def usage(self, scope: Scope, name: str) -> Usage:
        now = self.clock()
        return Usage(*(self.used((scope, name), k, now) for k in KINDS))

    # -- the request path ---------------------------------------------------------------
    def admit_request(self, tenant: str, key: str | None, body: Mapping[str, Any]) -> None:
        """The tenant's and key's input bounds (400), then their usage limits (429)."""
        if not self.enabled:
            return
        for subject in _subjects(tenant, key):
            check_bounds(body, self.effective(*subject), _who(subject, tenant))
        self.admit(tenant, estimate_prompt_tokens(body), key=key)

    def admit(self, tenant: str, prompt_tokens: int, *, key: str | None = None) -> None:
        """Counts a request and its prompt estimate against the key and the tenant, or
        raises LimitExceeded (counting nothing) when either is over a limit."""
        if not self.enabled:
            return
        now = self.clock()
        asks: dict[Kind, float] = {"requests": 1.0, "tokens": float(prompt_tokens), "cost": 0.0}
        subjects = _subjects(tenant, key)
        for subject in subjects:
            limits = self.effective(*subject)
            for kind in KINDS:
                limit = limits.limit(kind)
                if limit is None:
                    continue
                used = self.used(subject, kind, now)
                over = used >= limit if kind == "cost" else used + asks[kind] > limit
                if over:
                    self._refuse(subject, tenant, kind, limit, asks[kind], now)
        for subject in subjects:
            self._add(subject, "requests", 1.0, now)
            self._add(subject, "tokens", float(prompt_tokens), now)

    def charge(
        self, tenant: str, completion_tokens: int, cost: float, *, key: str | None = None
    ) -> None:
        """Counts what an answer used (after it was sent)."""
        if not self.enabled:
            return
        now = self.clock()
        for subject in _subjects(tenant, key):
            if completion_tokens > 0:
                self._add(subject, "tokens", float(completion_tokens), now)
            if cost > 0:
                self._add(subject, "cost", cost, now)

    def _add(self, subject: Subject, kind: Kind, amount: float, now: float) -> None:
        key = (*subject, kind, self.window(kind, now))
        self._pending[key] = self._pending.get(key, 0.0) + amount

    def _refuse(
        self, subject: Subject, tenant: str, kind: Kind, limit: float, ask: float, now: float
    ) -> None:
        used = self.used(subject, kind, now)
        retry_after = max(1.0, math.ceil(self._wait(subject, kind, limit, ask, now)))
        name = LIMIT_NAME[kind]
        scope = subject[0]
        if scope == "tenant":
            self.rejections.labels(tenant, name).inc()
        else:
            self.key_rejections.labels(subject[1], tenant, name).inc()
        who = _who(subject, tenant)
        if kind == "cost":
            message = (
                f"{who} has spent its budget of ${limit:g} for this period "
                f"(${used:.4f} used); retry after {retry_after:.0f} s"
            )
        else:
            message = (
                f"{who} is over its limit of {limit:g} {kind} per minute "
                f"({used:g} used); retry after {retry_after:.0f} s"
            )
        raise LimitExceeded(message, retry_after=retry_after, limit=name, scope=scope)

    def _wait(self, subject: Subject, kind: Kind, limit: float, ask: float, now: float) -> float:
        """Seconds until ``ask`` would fit if nothing else came in."""
        length = self.window_length(kind)
        to_next = (self.window(kind, now) + 1) * length - now
        current, previous, weight = self._counts(subject, kind, now)
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
            stored = await self.store.overrides()
        except BaseException:
            for key, amount in self._sending.items():
                self._pending[key] = self._pending.get(key, 0.0) + amount
            self._sending = {}
            raise
        self._sending = {}
        self._global = totals
        overrides: dict[Subject, dict[str, Any]] = {}
        for (scope, name), fields in stored.items():
            if scope == "tenant":
                overrides[("tenant", name)] = fields
            elif scope == "key":
                overrides[("key", name)] = fields
        self._set_overrides(overrides)
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


def _subjects(tenant: str, key: str | None) -> tuple[Subject, ...]:
    """The key first: when both are over, the narrower limit is the one reported."""
    return (("tenant", tenant),) if key is None else (("key", key), ("tenant", tenant))


async def on_rate_limited(request: Request, exc: Exception) -> JSONResponse:
    """OpenAI's 429: the error envelope (its message names the key or tenant), a
    ``Retry-After`` header (whole seconds), and ``x-cachegate-limit``: which limit
    was reached, as ``<scope>.<limit>`` (``key.requests_per_minute`` ...)."""
    assert isinstance(exc, RateLimited)
    status, body = body_for(exc)
    headers = {"Retry-After": str(math.ceil(exc.retry_after))}
    if isinstance(exc, LimitExceeded):
        headers["x-cachegate-limit"] = f"{exc.scope}.{exc.limit}"
    return JSONResponse(body, status_code=status, headers=headers)
