"""The single-flight registry alone: matching, hand-over, expiry (injectable clock)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from cache import CacheScope, CategoryPolicy, Flight, Follow, InFlight, SharedAnswer
from cache.types import Vector

SCOPE = CacheScope("t", "auto", "fp")
POLICY = CategoryPolicy(similarity_threshold=0.9)


def unit(*xs: float) -> Vector:
    v = np.zeros(8, dtype=np.float32)
    v[: len(xs)] = xs
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class Verdict:
    score: float
    equivalent: bool


class Refuses:
    """A checker that refuses texts containing a digit the query lacks."""

    def check(
        self, query_text: str, query_vec: Vector, cand_text: str, cand_vec: Vector, threshold=None
    ) -> Verdict:  # type: ignore[no-untyped-def]
        same = {c for c in query_text if c.isdigit()} == {c for c in cand_text if c.isdigit()}
        return Verdict(1.0 if same else 0.0, same)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


ANSWER = SharedAnswer({"choices": []}, "large", "large", 3, 5)


async def test_exact_then_semantic_follow_and_resolution() -> None:
    reg = InFlight(Refuses(), max_wait_s=10)
    lead = reg.enter(SCOPE, "What is 2 + 2?", unit(1, 0), POLICY)
    assert isinstance(lead, Flight)
    same = reg.enter(SCOPE, " What is  2 + 2?", unit(0, 1), POLICY)  # normalised text
    assert isinstance(same, Follow) and same.similarity == 1.0
    para = reg.enter(SCOPE, "What's 2 + 2?", unit(1, 0.1), POLICY)
    assert isinstance(para, Follow) and 0.9 < para.similarity < 1.0
    other = reg.enter(SCOPE, "What is 2 + 3?", unit(1, 0.05), POLICY)
    assert isinstance(other, Flight)  # close by cosine, refused by the checker: leads
    elsewhere = reg.enter(CacheScope("u", "auto", "fp"), "What is 2 + 2?", unit(1, 0), POLICY)
    assert isinstance(elsewhere, Flight)  # another tenant never follows
    lead.resolve(ANSWER)
    assert await same.wait(reg.clock) == ANSWER and await para.wait(reg.clock) == ANSWER
    lead.abandon()  # after resolve: no effect
    assert lead.future.result() == ANSWER
    assert len(reg) == 2


async def test_follow_and_lead_flags() -> None:
    reg = InFlight(None, max_wait_s=10)
    lead = reg.enter(SCOPE, "q", unit(1), POLICY)
    assert isinstance(lead, Flight)
    assert reg.enter(SCOPE, "q", unit(1), POLICY, follow=False) is None  # one leader per text
    assert reg.enter(SCOPE, "q2", unit(0, 1), POLICY, lead=False) is None
    # without a checker, cosine alone decides (as the cache does)
    assert isinstance(reg.enter(SCOPE, "q3", unit(1, 0.2), POLICY), Follow)
    disabled = CategoryPolicy(enabled=False)
    assert isinstance(reg.enter(SCOPE, "q4", unit(1), disabled), Flight)


async def test_abandoned_flight_hands_over() -> None:
    reg = InFlight(None, max_wait_s=10)
    lead = reg.enter(SCOPE, "q", unit(1), POLICY)
    f = reg.enter(SCOPE, "q", unit(1), POLICY)
    assert isinstance(lead, Flight) and isinstance(f, Follow)
    lead.abandon()
    assert await f.wait(reg.clock) is None
    assert len(reg) == 0
    assert isinstance(reg.enter(SCOPE, "q", unit(1), POLICY), Flight)


async def test_flights_expire_after_the_longest_wait() -> None:
    clock = Clock()
    reg = InFlight(None, max_wait_s=5, clock=clock)
    stale = reg.enter(SCOPE, "q", unit(1), POLICY)
    assert isinstance(stale, Flight)
    late = reg.enter(SCOPE, "q", unit(1), POLICY)
    assert isinstance(late, Follow)
    clock.now = 5.0
    assert await late.wait(clock) is None  # past its deadline: no waiting at all
    fresh = reg.enter(SCOPE, "q", unit(1), POLICY)
    assert isinstance(fresh, Flight) and fresh is not stale and stale.done
    other = reg.enter(CacheScope("t", "auto", "other"), "x", unit(0, 1), POLICY)
    assert isinstance(other, Flight)
    clock.now = 20.0  # the periodic sweep forgets flights of every scope
    reg.enter(CacheScope("t", "auto", "third"), "y", unit(0, 0, 1), POLICY)
    assert fresh.done and other.done and len(reg) == 1


async def test_waiting_follower_times_out() -> None:
    reg = InFlight(None, max_wait_s=0.05)
    lead = reg.enter(SCOPE, "q", unit(1), POLICY)
    f = reg.enter(SCOPE, "q", unit(1), POLICY)
    assert isinstance(lead, Flight) and isinstance(f, Follow)
    assert await f.wait(reg.clock) is None
    assert not lead.done  # a follower giving up does not end the leader's flight
    lead.resolve(ANSWER)


@pytest.mark.parametrize("n", [1, 300])
async def test_many_flights_in_one_scope(n: int) -> None:
    reg = InFlight(None, max_wait_s=10)
    rng = np.random.default_rng(0)
    for i in range(n):
        v = rng.normal(size=8).astype(np.float32)
        reg.enter(SCOPE, f"q{i}", v / np.linalg.norm(v), CategoryPolicy(similarity_threshold=1.0))
    newest = reg.flights()[-1]
    f = reg.enter(SCOPE, "z", newest.vector, POLICY)
    assert isinstance(f, Follow) and f.flight is newest
