"""In-context examples (IC-Cache): past large-model answers that help the small model.

When the router picks the small model, the proxy hands over the cached
neighbours of the request; this module keeps the ones worth showing — from
the large model, same tenant, similar enough, never marked bad — ranks them by
similarity × learned utility, fits them in a token budget, and prepends them as
earlier user/assistant turns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from router.errors import RouterConfigError
from router.types import check_tier, check_unit

#: Roles kept ahead of the examples (instructions stay first).
LEADING_ROLES = frozenset({"system", "developer"})


@dataclass(frozen=True)
class ExampleCandidate:
    """A cached (request, answer) pair near the current request."""

    entry_id: str
    tenant: str
    request_text: str
    answer_text: str
    similarity: float
    utility: float
    tier: str
    bad_feedback: bool = False

    def __post_init__(self) -> None:
        check_tier(self.tier, "tier")
        if not -1.0 <= self.similarity <= 1.0 or math.isnan(self.similarity):
            raise RouterConfigError(f"similarity must be in [-1, 1], got {self.similarity!r}")
        check_unit(self.utility, "utility")


@dataclass(frozen=True)
class ExampleConfig:
    """How many examples, how long, how similar; switchable per category.

    ``similarity_floor`` sits below the cache hit threshold: a neighbour too far
    to be served as the answer can still show the small model how to answer.
    """

    k: int = 3
    token_budget: int = 1024
    similarity_floor: float = 0.6
    enabled: bool = True
    per_category: Mapping[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise RouterConfigError(f"k must be an integer >= 0, got {self.k!r}")
        budget = self.token_budget
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise RouterConfigError(f"token_budget must be an integer >= 0, got {budget!r}")
        floor = self.similarity_floor
        if not isinstance(floor, int | float) or math.isnan(floor) or not -1.0 <= floor <= 1.0:
            raise RouterConfigError(f"similarity_floor must be in [-1, 1], got {floor!r}")
        flags = {str(name): bool(on) for name, on in dict(self.per_category).items()}
        object.__setattr__(self, "per_category", MappingProxyType(flags))

    def enabled_for(self, category: str) -> bool:
        return self.per_category.get(category, self.enabled)


def select_examples(
    candidates: Sequence[ExampleCandidate],
    *,
    tenant: str,
    category: str,
    config: ExampleConfig,
    count_tokens: Callable[[str], int],
) -> tuple[ExampleCandidate, ...]:
    """Up to ``config.k`` examples, best first, whose texts fit ``config.token_budget``."""
    if not config.enabled_for(category) or config.k == 0:
        return ()
    seen: set[str] = set()
    eligible: list[ExampleCandidate] = []
    for cand in candidates:
        if (
            cand.tenant != tenant  # the caller pre-filters; a leak here is never acceptable
            or cand.tier != "large"
            or cand.bad_feedback
            or cand.similarity < config.similarity_floor
            or cand.entry_id in seen
            or not cand.answer_text.strip()  # an answer that only called tools shows nothing
        ):
            continue
        seen.add(cand.entry_id)
        eligible.append(cand)
    eligible.sort(key=lambda c: (-c.similarity * c.utility, -c.similarity, c.entry_id))
    chosen: list[ExampleCandidate] = []
    used = 0
    for cand in eligible:
        cost = count_tokens(cand.request_text) + count_tokens(cand.answer_text)
        if used + cost > config.token_budget:
            continue  # a shorter, lower-ranked example may still fit
        chosen.append(cand)
        used += cost
        if len(chosen) == config.k:
            break
    return tuple(chosen)


def build_messages(
    messages: Sequence[Mapping[str, Any]], examples: Sequence[ExampleCandidate]
) -> list[dict[str, Any]]:
    """The conversation with examples as earlier turns, after any leading system messages.

    Examples come best-last, so the most useful one sits next to the question.
    The input messages are copied, never changed.
    """
    head = 0
    while head < len(messages) and messages[head].get("role") in LEADING_ROLES:
        head += 1
    shots: list[dict[str, Any]] = []
    for ex in reversed(examples):
        shots.append({"role": "user", "content": ex.request_text})
        shots.append({"role": "assistant", "content": ex.answer_text})
    out = [dict(m) for m in messages[:head]]
    out.extend(shots)
    out.extend(dict(m) for m in messages[head:])
    return out
