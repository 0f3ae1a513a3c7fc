"""``train_router``: a JSONL of outcome records in, a router artifact out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from router.errors import RouterConfigError, RouterDataError
from router.fit import FitArrays, FitParams, fit_model
from router.metrics import RoutingQuality, routing_quality
from router.model import KINDS
from router.records import RouteRecord, read_records

Embed = Callable[[Sequence[str]], np.ndarray]  # returns (n, dim) float32, unit rows


def estimate_tokens(text: str) -> int:
    """About four characters a token (OpenAI's rule of thumb); pass a real count when known."""
    return max(1, round(len(text) / 4))


@dataclass(frozen=True)
class TrainReport:
    kind: str
    records: int
    artifact: Path
    artifact_bytes: int
    memory_size: int
    small_ok_rate: float
    large_ok_rate: float
    default_large_share: float
    default_threshold: float
    #: Out-of-fold quality on the records that carry both outcomes (None if too few).
    cross_validated: RoutingQuality | None


def arrays_from_records(
    records: Sequence[RouteRecord],
    vectors: np.ndarray,
    count_tokens: Callable[[str], int] = estimate_tokens,
) -> FitArrays:
    if len(records) != vectors.shape[0]:
        raise RouterDataError(f"{len(records)} records but {vectors.shape[0]} vectors")

    def outcome(value: float | None) -> float:
        return float("nan") if value is None else value

    return FitArrays(
        vectors=np.asarray(vectors, dtype=np.float32),
        small_ok=np.array([outcome(r.small_ok) for r in records]),
        large_ok=np.array([outcome(r.large_ok) for r in records]),
        prompt_tokens=np.array(
            [
                r.prompt_tokens if r.prompt_tokens is not None else count_tokens(r.prompt)
                for r in records
            ],
            dtype=np.float64,
        ),
        categories=[r.category for r in records],
        groups=[r.group or r.category for r in records],
        cache_max_sim=np.array(
            [max(r.neighbour_similarities, default=0.0) for r in records], dtype=np.float32
        ),
    )


def train_router(
    records_jsonl: Path,
    embed: Embed,
    out: Path,
    kind: str = "blend",
    *,
    count_tokens: Callable[[str], int] = estimate_tokens,
    params: FitParams | None = None,
) -> TrainReport:
    """Fit a router on ``records_jsonl`` and save it to ``out`` (a ``.npz`` file).

    The artifact holds every learned kind; ``kind`` picks the one reported.
    """
    if kind not in KINDS:
        raise RouterConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    params = params or FitParams()
    records = list(read_records(Path(records_jsonl)))
    if not records:
        raise RouterDataError(f"{records_jsonl} holds no records")
    vectors = np.asarray(embed([r.prompt for r in records]), dtype=np.float32)
    result = fit_model(arrays_from_records(records, vectors, count_tokens), params)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.model.save(out)
    both = np.array([r.small_ok is not None and r.large_ok is not None for r in records])
    quality = None
    small, large = result.small_ok[both], result.large_ok[both]
    if both.sum() >= 10 and large.mean() > small.mean():
        quality = routing_quality(result.oof_scores[kind][both], small, large)
    return TrainReport(
        kind=kind,
        records=len(records),
        artifact=out,
        artifact_bytes=out.stat().st_size,
        memory_size=result.model.memory.vectors.shape[0],
        small_ok_rate=float(result.small_ok.mean()),
        large_ok_rate=float(result.large_ok.mean()),
        default_large_share=params.default_large_share,
        default_threshold=result.model.default_threshold(kind),
        cross_validated=quality,
    )
