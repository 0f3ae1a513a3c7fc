"""Single-flight for misses: a request the cache would answer with the answer of a
request whose backend call is still in flight waits for that answer instead of making
a call of its own.

The cache can serve an answer only once it is stored. In a burst of the same or an
equivalent question (a retry storm, a shared dashboard, a popular prompt), every request
that arrives during the first one's backend call misses, and each costs a backend call
of its own, the more so when the backend is slow because it is overloaded. Here the
first miss *leads* (registers a :class:`Flight`) and later ones *follow* it, matched by
the rules a cache lookup would apply once the answer is stored: the same scope (tenant,
model alias, context fingerprint), then the exact normalised text, or cosine at least
the follower's effective ``similarity_threshold`` and the equivalence check at its
``equivalence_threshold``. So coalescing never serves an answer the cache would not
have served a few seconds later; it only serves it sooner, and once.

A leader resolves its flight with its answer only when that answer is storable (what
the cache would keep); any other end (an error, a truncated or cancelled stream)
abandons it, and its followers try again: one of them leads, the rest follow it, so a
failed call does not turn into a stampede. A follower waits at most ``max_wait_s``
from the start of the flight; a flight that is neither resolved nor abandoned by then
(its client went away before its stream started) is forgotten.

Per process: replicas do not coalesce with each other. Everything here runs on the
event loop; :meth:`InFlight.enter` does not await, so checking for a flight and
registering one cannot interleave with another request's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cache.errors import CacheError
from cache.normalize import exact_key
from cache.policy import CategoryPolicy
from cache.semantic_cache import Checker
from cache.types import CacheScope, Tier, Vector

log = logging.getLogger(__name__)

# Flights of one scope compared by cosine per request, newest first: a scope with more
# calls in flight than this is a load test, not a burst of one question.
MAX_COMPARED = 256
# Candidates over the cosine threshold given to the equivalence check (each ~0.3 ms,
# on the event loop: enter() must not await, see the module docstring).
MAX_CHECKED = 3


@dataclass(frozen=True)
class SharedAnswer:
    """A leader's complete answer, as a follower serves it."""

    response: dict[str, Any]
    backend: str
    tier: Tier
    prompt_tokens: int
    completion_tokens: int


class Flight:
    """A leading miss's backend call; resolved or abandoned exactly once."""

    def __init__(
        self,
        registry: InFlight,
        key: str,
        group: tuple[str, str, str],
        text: str,
        vector: Vector,
        started: float,
        leader: str,
    ) -> None:
        self._registry = registry
        self.key, self.group, self.text, self.vector = key, group, text, vector
        self.leader = leader  # the leading request's id (followers name it in a header)
        self.started = started
        self.followers = 0  # requests that joined it (they may have given up since)
        self.future: asyncio.Future[SharedAnswer | None] = (
            asyncio.get_running_loop().create_future()
        )

    @property
    def done(self) -> bool:
        return self.future.done()

    def resolve(self, answer: SharedAnswer) -> None:
        self._finish(answer)

    def abandon(self) -> None:
        self._finish(None)

    def _finish(self, answer: SharedAnswer | None) -> None:
        if self.future.done():
            return
        self.future.set_result(answer)
        self._registry._forget(self)


@dataclass(frozen=True)
class Follow:
    """A request waiting for an equivalent flight's answer."""

    flight: Flight
    similarity: float  # 1.0 for the exact text
    deadline: float  # on the registry's clock

    async def wait(self, clock: Callable[[], float]) -> SharedAnswer | None:
        """The leader's answer; ``None`` when it failed or did not come in time."""
        remaining = self.deadline - clock()
        if remaining <= 0:
            return None
        try:
            # shield: a follower that gives up must not cancel the leader's future,
            # which the leader and the other followers share.
            return await asyncio.wait_for(asyncio.shield(self.flight.future), remaining)
        except TimeoutError:
            return None


class InFlight:
    """The flights of one process, by exact key and by scope."""

    def __init__(
        self,
        checker: Checker | None,
        *,
        max_wait_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checker = checker
        self.max_wait_s = max_wait_s
        self.clock = clock
        self._by_key: dict[str, Flight] = {}
        self._by_group: dict[tuple[str, str, str], list[Flight]] = {}
        self._next_sweep = clock() + max_wait_s

    def __len__(self) -> int:
        return len(self._by_key)

    def flights(self) -> list[Flight]:
        """The flights in progress (for tests and admin views)."""
        return list(self._by_key.values())

    def enter(
        self,
        scope: CacheScope,
        text: str,
        vector: Vector,
        policy: CategoryPolicy,
        *,
        follow: bool = True,
        lead: bool = True,
        request_id: str = "",
    ) -> Flight | Follow | None:
        """Follow an equivalent flight (when ``follow``), else lead a new one (when
        ``lead`` and no flight has this exact text), else ``None``: go alone."""
        now = self.clock()
        key = exact_key(scope, text)
        group = (scope.tenant, scope.model_alias, scope.fingerprint)
        self._expire(now)
        if follow and policy.enabled:
            match = self._match(key, group, text, vector, policy, now)
            if match is not None:
                flight, similarity = match
                flight.followers += 1
                return Follow(flight, similarity, flight.started + self.max_wait_s)
        if not lead or key in self._by_key:
            return None
        flight = Flight(self, key, group, text, vector, now, request_id)
        self._by_key[key] = flight
        self._by_group.setdefault(group, []).append(flight)
        return flight

    def _match(
        self,
        key: str,
        group: tuple[str, str, str],
        text: str,
        vector: Vector,
        policy: CategoryPolicy,
        now: float,
    ) -> tuple[Flight, float] | None:
        same = self._by_key.get(key)
        if same is not None and self._expired(same, now):
            same.abandon()
            same = None
        if same is not None:
            return same, 1.0
        flights = self._by_group.get(group)
        if not flights:
            return None
        recent = [f for f in flights[-MAX_COMPARED:] if not self._expired(f, now)]
        if not recent:
            return None
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        sims = np.stack([np.asarray(f.vector, dtype=np.float32).reshape(-1) for f in recent]) @ q
        over = [i for i in np.argsort(-sims) if sims[i] >= policy.similarity_threshold]
        if self.checker is None:
            return (recent[over[0]], float(sims[over[0]])) if over else None
        for i in over[:MAX_CHECKED]:
            flight = recent[i]
            try:
                verdict = self.checker.check(
                    text, q, flight.text, flight.vector, policy.equivalence_threshold
                )
            except CacheError as exc:  # a vector the checker refuses: not a match
                log.warning("equivalence check on an in-flight request failed: %s", exc)
                continue
            if verdict.equivalent:
                return flight, float(sims[i])
        return None

    def _expire(self, now: float) -> None:
        # A flight past the longest wait has no followers left; one still registered
        # was never finished (its client left before its stream began). Swept at most
        # once per max_wait_s, so a request pays this rarely.
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.max_wait_s
        for flight in list(self._by_key.values()):
            if self._expired(flight, now):
                flight.abandon()

    def _expired(self, flight: Flight, now: float) -> bool:
        """Past the longest wait: nobody may follow it any more."""
        return now - flight.started >= self.max_wait_s

    def _forget(self, flight: Flight) -> None:
        if self._by_key.get(flight.key) is flight:
            del self._by_key[flight.key]
        flights = self._by_group.get(flight.group)
        if flights is not None:
            if flight in flights:
                flights.remove(flight)
            if not flights:
                del self._by_group[flight.group]
