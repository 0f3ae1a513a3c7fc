"""One immutable fitted model: head + definitions + signals -> a Classification.

The :class:`~classifier.classifier.Classifier` swaps a whole new ``Model`` in
when it retrains, so a request being classified never sees half an update.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from classifier.context import TURN_WEIGHTS, follow_up_weight
from classifier.definitions import CategoryDef
from classifier.errors import InputError
from classifier.head import F32, MixtureHead, softmax
from classifier.signals import TextView, compute_signals

Source = Literal["head", "signal", "context", "fallback"]

# Logit added per keyword/pattern hit of a category (at most MAX_HINT_HITS count).
HINT_WEIGHT = 1.5
MAX_HINT_HITS = 2
# Below this confidence a follow-up's own evidence yields to the earlier turns'.
CONTEXT_GATE = 0.8
# Scale of the earlier turns' evidence for a follow-up.
CONTEXT_WEIGHT = 1.5
_FLOOR = np.float32(1e-6)


@dataclass(frozen=True)
class Classification:
    """The category of a request.

    ``confidence`` is the probability of the best category (``candidate``), also
    when it was below ``min_confidence`` and ``category`` became the fallback.
    ``source`` says what decided: ``head`` (the vector), ``signal`` (text signals or
    hints changed the head's answer), ``context`` (earlier turns changed it) or
    ``fallback`` (nothing was confident enough).
    """

    category: str
    confidence: float
    source: Source
    candidate: str
    scores: tuple[tuple[str, float], ...] = field(repr=False)


@dataclass(frozen=True)
class Model:
    definitions: tuple[CategoryDef, ...]
    head: MixtureHead
    fallback: str
    min_confidence: float

    def __post_init__(self) -> None:
        if tuple(d.name for d in self.definitions) != self.head.labels:
            raise InputError("the head's labels must follow the definitions' order")

    @property
    def labels(self) -> tuple[str, ...]:
        return self.head.labels

    def evidence(self, text: str) -> F32:
        """Text evidence per category, in logits: built-in signals plus hints."""
        view = TextView.of(text)
        boosts = np.zeros(len(self.labels), dtype=np.float32)
        builtin = compute_signals(view).as_dict()
        for i, d in enumerate(self.definitions):
            hits = min(d.hint_hits(view), MAX_HINT_HITS) if d.has_hints else 0
            boosts[i] = builtin.get(d.name, 0.0) + HINT_WEIGHT * hits
        return boosts

    def head_logits(self, vector: F32) -> F32:
        if vector.shape != (self.head.dim,):
            raise InputError(f"vector must have shape ({self.head.dim},), got {vector.shape}")
        p = self.head.probabilities(vector.astype(np.float32, copy=False))
        return np.asarray(np.log(np.maximum(p, _FLOOR)), dtype=np.float32)

    def classify(
        self,
        vector: F32,
        text: str,
        context: Sequence[str] = (),
        context_vector: F32 | None = None,
    ) -> Classification:
        head = self.head_logits(vector)
        own = head + self.evidence(text)
        probs = softmax(own)
        best = int(probs.argmax())
        source: Source = "head" if best == int(head.argmax()) else "signal"
        weight = follow_up_weight(text) if (context or context_vector is not None) else 0.0
        if weight > 0 and (weight >= 1.0 or float(probs[best]) < CONTEXT_GATE):
            earlier = np.zeros_like(own)
            for turn_weight, turn in zip(TURN_WEIGHTS, reversed(context), strict=False):
                earlier += turn_weight * self.evidence(turn)
            if context_vector is not None:
                ctx = self.head_logits(context_vector)
                earlier += ctx - ctx.max()
            # A follow-up cue ("and in Rust?") makes the short turn's own vector
            # unreliable: it loses half its say and the earlier turns gain.
            mixed = own - 0.5 * head if weight >= 1.0 else own
            probs = softmax((mixed + weight * CONTEXT_WEIGHT * earlier).astype(np.float32))
            if int(probs.argmax()) != best:
                best, source = int(probs.argmax()), "context"
        confidence = float(probs[best])
        candidate = self.labels[best]
        category = candidate
        if confidence < self.min_confidence:
            category, source = self.fallback, "fallback"
        scores = tuple((name, float(p)) for name, p in zip(self.labels, probs, strict=True))
        return Classification(category, confidence, source, candidate, scores)
