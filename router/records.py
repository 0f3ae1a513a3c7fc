"""Training records: one type fed by public benchmark files and by cachegate's own log.

A benchmark row knows both tiers' outcomes (``small_ok`` and ``large_ok``);
a logged request knows only the tier that served it, with the user's feedback
as its outcome, so the other field is None. The trainer fills a missing
outcome with that tier's mean over the records that have it — a prior, not a
guess about the request — so both kinds of record train the same model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.errors import RouterDataError
from router.types import Tier, check_tier

# RouteLLM's evaluation files name the outcomes after weak/strong models.
_ALIASES = {"small_ok": "weak_correct", "large_ok": "strong_correct"}


def _outcome(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and not math.isnan(value) and 0.0 <= value <= 1.0:
        return float(value)
    raise RouterDataError(f"{name} must be a bool or a score in [0, 1], got {value!r}")


@dataclass(frozen=True)
class RouteRecord:
    """One request with what each tier's answer was worth (1 good, 0 bad)."""

    prompt: str
    small_ok: float | None
    large_ok: float | None
    category: str = "general"
    prompt_tokens: int | None = None
    neighbour_similarities: tuple[float, ...] = ()
    #: A finer topic label known at training time only (e.g. an MMLU subject);
    #: the trainer learns per-group priors from it and the router infers the
    #: group from the vector, so the proxy never has to supply it.
    group: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise RouterDataError(f"prompt must be non-empty text, got {self.prompt!r}")
        object.__setattr__(self, "small_ok", _outcome(self.small_ok, "small_ok"))
        object.__setattr__(self, "large_ok", _outcome(self.large_ok, "large_ok"))
        if self.small_ok is None and self.large_ok is None:
            raise RouterDataError("a record needs small_ok, large_ok or both")


def record_from_log(
    prompt: str,
    tier: str,
    reward: float,
    category: str = "general",
    prompt_tokens: int | None = None,
    neighbour_similarities: tuple[float, ...] = (),
) -> RouteRecord:
    """A record from one logged request: the serving tier and its feedback reward."""
    served: Tier = check_tier(tier, "tier")
    outcome = _outcome(reward, "reward")
    return RouteRecord(
        prompt=prompt,
        small_ok=outcome if served == "small" else None,
        large_ok=outcome if served == "large" else None,
        category=category,
        prompt_tokens=prompt_tokens,
        neighbour_similarities=tuple(neighbour_similarities),
    )


def record_from_json(row: dict[str, Any], where: str = "record") -> RouteRecord:
    if not isinstance(row, dict):
        raise RouterDataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    prompt = row.get("prompt")
    if prompt is None:
        raise RouterDataError(f"{where}: missing field 'prompt'")
    outcomes: dict[str, float | None] = {}
    for name, alias in _ALIASES.items():
        outcomes[name] = _outcome(row.get(name, row.get(alias)), f"{where}: {name}")
    sims = row.get("neighbour_similarities") or ()
    return RouteRecord(
        prompt=prompt,
        small_ok=outcomes["small_ok"],
        large_ok=outcomes["large_ok"],
        category=str(row.get("category") or "general"),
        prompt_tokens=row.get("prompt_tokens"),
        neighbour_similarities=tuple(float(s) for s in sims),
        group=None if row.get("group") is None else str(row["group"]),
    )


def read_records(path: Path) -> Iterator[RouteRecord]:
    """Records from a JSONL file of ``{prompt, small_ok, large_ok[, category, ...]}``."""
    try:
        with Path(path).open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RouterDataError(f"{path}:{number}: not JSON: {exc.msg}") from exc
                yield record_from_json(row, f"{path}:{number}")
    except OSError as exc:
        raise RouterDataError(f"cannot read records from {path}: {exc}") from exc
