"""Router configuration: a validated value, built where settings are loaded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from router.errors import RouterConfigError
from router.scorers import check_kind
from router.types import Tier, check_tier, check_unit


@dataclass(frozen=True)
class RouterConfig:
    """How the router decides.

    ``threshold``: requests scoring at or above it go to the small model; None
    takes the trained artifact's default (0.5 for untrained kinds); 0 is valid
    and sends everything small. ``category_overrides`` pins categories to a tier
    (e.g. ``{"code": "large", "conversation": "small"}``) before any scoring.
    """

    kind: str = "blend"
    threshold: float | None = None
    category_overrides: Mapping[str, Tier] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        check_kind(self.kind)
        if self.threshold is not None:
            object.__setattr__(self, "threshold", check_unit(self.threshold, "threshold"))
        overrides: dict[str, Tier] = {}
        for category, tier in dict(self.category_overrides).items():
            if not isinstance(category, str) or not category:
                raise RouterConfigError(f"override category must be a name, got {category!r}")
            overrides[category] = check_tier(tier, f"category_overrides[{category!r}]")
        object.__setattr__(self, "category_overrides", MappingProxyType(overrides))
