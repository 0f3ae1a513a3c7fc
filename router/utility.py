"""Learned utility of in-context examples, and the offline pool refresh ("replay").

Each example's utility is the mean of a Beta posterior over "the answer it
helped produce was good": every time the small model answered with the example
in its prompt, the outcome (feedback reward in [0, 1]) is credited to it. A
decay < 1 lets old evidence fade so utilities follow drifting traffic. All of
it is plain values; the caller persists them (e.g. next to the cache entry).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from router.errors import RouterConfigError
from router.types import check_unit

PRIOR = 1.0  # Beta(1, 1): a fresh example starts at utility 0.5


@dataclass(frozen=True)
class Utility:
    """Beta(alpha, beta) over an example's usefulness."""

    alpha: float = PRIOR
    beta: float = PRIOR

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def uses(self) -> float:
        """Evidence seen (decayed), not counting the prior."""
        return self.alpha + self.beta - 2 * PRIOR


def update_utility(current: Utility, reward: float, decay: float = 1.0) -> Utility:
    """Posterior after one outcome; ``decay`` shrinks earlier evidence toward the prior."""
    r = check_unit(reward, "reward")
    d = check_unit(decay, "decay")
    return Utility(
        alpha=PRIOR + d * (current.alpha - PRIOR) + r,
        beta=PRIOR + d * (current.beta - PRIOR) + (1.0 - r),
    )


class UtilityModel:
    """Utilities by entry id; ``update`` after each outcome, ``utility`` when ranking."""

    def __init__(self, states: Mapping[str, Utility] | None = None, decay: float = 1.0) -> None:
        self.decay = check_unit(decay, "decay")
        self._states = dict(states or {})

    def update(self, entry_id: str, reward: float) -> Utility:
        state = update_utility(self._states.get(entry_id, Utility()), reward, self.decay)
        self._states[entry_id] = state
        return state

    def utility(self, entry_id: str) -> float:
        return self._states.get(entry_id, Utility()).mean

    def state(self, entry_id: str) -> Utility:
        return self._states.get(entry_id, Utility())

    def states(self) -> dict[str, Utility]:
        """A copy of every state, for the caller to persist."""
        return dict(self._states)


@dataclass(frozen=True)
class ExampleOutcome:
    """One logged small-model answer: the examples it was shown and how it went."""

    entry_ids: tuple[str, ...]
    reward: float

    def __post_init__(self) -> None:
        check_unit(self.reward, "reward")


@dataclass(frozen=True)
class RefreshResult:
    kept: dict[str, Utility]
    pruned: tuple[str, ...]


def refresh(
    pool: Mapping[str, Utility],
    outcomes: Iterable[ExampleOutcome],
    *,
    bad_feedback: Collection[str] = (),
    min_utility: float = 0.3,
    min_uses: float = 5.0,
    max_pool: int | None = None,
    decay: float = 1.0,
) -> RefreshResult:
    """Replay outcomes over the example pool, then prune it.

    Dropped: entries with bad feedback, entries whose utility fell below
    ``min_utility`` after at least ``min_uses`` observations (too few says
    nothing yet), and the lowest-utility ones beyond ``max_pool``.
    Outcomes naming entries outside the pool are ignored (they were evicted).
    """
    check_unit(min_utility, "min_utility")
    if max_pool is not None and max_pool < 0:
        raise RouterConfigError(f"max_pool must be >= 0, got {max_pool!r}")
    model = UtilityModel(pool, decay=decay)
    for outcome in outcomes:
        for entry_id in outcome.entry_ids:
            if entry_id in pool:
                model.update(entry_id, outcome.reward)
    states = model.states()
    bad = set(bad_feedback)
    pruned = [
        eid
        for eid, st in states.items()
        if eid in bad or (st.uses >= min_uses and st.mean < min_utility)
    ]
    kept = {eid: st for eid, st in states.items() if eid not in set(pruned)}
    if max_pool is not None and len(kept) > max_pool:
        ranked = sorted(kept, key=lambda eid: (-kept[eid].mean, eid))
        pruned.extend(ranked[max_pool:])
        kept = {eid: kept[eid] for eid in ranked[:max_pool]}
    return RefreshResult(kept=kept, pruned=tuple(sorted(pruned)))
