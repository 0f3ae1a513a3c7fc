"""All configured backends: alias resolution, tiers and fallback between them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from backends.backend import Backend, Tier
from backends.errors import (
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from backends.transport import BackendReply, BackendRequest

TIERS: tuple[Tier, Tier] = ("small", "large")


@dataclass(frozen=True)
class PoolReply:
    reply: BackendReply
    backend: Backend
    fell_back: bool


class BackendPool:
    def __init__(self, backends: Iterable[Backend]) -> None:
        self.backends: list[Backend] = list(backends)
        if not self.backends:
            raise ValueError("a backend pool needs at least one backend")
        self._by_alias: dict[str, Backend] = {}
        for b in self.backends:
            for alias in (b.name, b.spec.model, *b.spec.aliases):
                self._by_alias.setdefault(alias, b)

    def resolve(self, alias: str) -> Backend | None:
        """The backend an alias pins, or None (``auto`` and unknown names)."""
        return self._by_alias.get(alias)

    @property
    def aliases(self) -> list[str]:
        return list(self._by_alias)

    def tier(self, tier: Tier) -> list[Backend]:
        return [b for b in self.backends if b.tier == tier]

    def first_available(self, tier: Tier) -> Backend | None:
        members = self.tier(tier)
        for b in members:
            if b.circuit.available():
                return b
        return members[0] if members else None

    def has_tier(self, tier: Tier) -> bool:
        return any(b.tier == tier for b in self.backends)

    def tier_available(self, tier: Tier) -> bool:
        return any(b.circuit.available() for b in self.tier(tier))

    def tier_overloaded(self, tier: Tier) -> bool:
        members = [b for b in self.tier(tier) if b.circuit.available()]
        return bool(members) and all(b.overloaded for b in members)

    async def call(
        self, primary: Backend, request: BackendRequest, *, cross_tier: bool = True
    ) -> PoolReply:
        """Call ``primary``; when it is down, try the rest of its tier, then (if
        ``cross_tier``) the other tier.

        A backend that refused the request itself (4xx other than 429) is not
        failed over: another backend would refuse it too, and the client must
        see why.
        """
        order = [primary, *(b for b in self.tier(primary.tier) if b is not primary)]
        if cross_tier:
            order += [b for b in self.backends if b.tier != primary.tier]
        last: UpstreamError | None = None
        errors: list[UpstreamError] = []
        for backend in order:
            try:
                reply = await backend.call(request)
            except UpstreamStatusError as exc:
                if not exc.retryable:
                    raise
                last = exc
            except UpstreamError as exc:  # unreachable, timed out, or stream broke early
                last = exc
            else:
                return PoolReply(reply=reply, backend=backend, fell_back=backend is not primary)
            errors.append(last)
        assert last is not None
        if len(order) > 1 and not all(isinstance(e, UpstreamTimeout) for e in errors):
            raise UpstreamUnavailable(
                f"all backends failed; last error: {last}", backend=last.backend
            ) from last
        raise last

    async def aclose(self) -> None:
        for b in self.backends:
            await b.aclose()
