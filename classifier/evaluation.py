"""Scores of a fitted classifier: accuracy, per-category F1, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class CategoryScore:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Evaluation:
    """How well a head did. ``kind`` is ``holdout`` (scored on examples it was not
    fitted on) or ``training`` (scored on its own training examples: an upper bound)."""

    kind: str
    examples: int
    accuracy: float
    macro_f1: float
    per_category: tuple[CategoryScore, ...]
    fit_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "examples": self.examples,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "fit_seconds": self.fit_seconds,
            "per_category": [vars(c) for c in self.per_category],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(
            kind=str(data["kind"]),
            examples=int(data["examples"]),
            accuracy=float(data["accuracy"]),
            macro_f1=float(data["macro_f1"]),
            fit_seconds=float(data["fit_seconds"]),
            per_category=tuple(CategoryScore(**c) for c in data["per_category"]),
        )


def confusion(
    truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
) -> npt.NDArray[np.int64]:
    """Rows: true category, columns: predicted, both in ``labels`` order."""
    index = {name: i for i, name in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(truth, predicted, strict=True):
        m[index[t], index[p]] += 1
    return m


def evaluate(
    truth: Sequence[str],
    predicted: Sequence[str],
    labels: Sequence[str],
    *,
    kind: str = "holdout",
    fit_seconds: float = 0.0,
) -> Evaluation:
    """Scores over the categories in ``labels`` that occur in ``truth``."""
    m = confusion(truth, predicted, labels)
    scores = []
    for i, name in enumerate(labels):
        support = int(m[i].sum())
        if support == 0:
            continue
        tp = float(m[i, i])
        precision = tp / max(float(m[:, i].sum()), 1.0)
        recall = tp / support
        f1 = 2 * tp / max(float(m[i].sum() + m[:, i].sum()), 1.0)
        scores.append(CategoryScore(name, precision, recall, f1, support))
    total = int(m.sum())
    return Evaluation(
        kind=kind,
        examples=total,
        accuracy=float(np.trace(m)) / max(total, 1),
        macro_f1=float(np.mean([s.f1 for s in scores])) if scores else 0.0,
        per_category=tuple(scores),
        fit_seconds=fit_seconds,
    )
