"""The bundled probe vectors are the bundled embedder's, and tell another space apart."""

from __future__ import annotations

import numpy as np

from backends import OnnxEmbedder
from backends.space import probe, reference_probe
from cache import VectorSpace
from cache.vector_space import SAME_SPACE_COSINE


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return VectorSpace("a", a).agreement(VectorSpace("b", b))


def test_reference_is_the_bundled_embedders_probe(embedder: OnnxEmbedder) -> None:
    # Fails when the model package changes under the committed reference: rerun
    # `python -m backends.space` (and refit the artifacts if the space moved).
    assert agreement(probe(embedder), reference_probe()) > 0.9999


def test_another_space_or_width_disagrees(embedder: OnnxEmbedder) -> None:
    mine = probe(embedder)
    turn, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(384, 384)))
    assert agreement((mine @ turn).astype(np.float32), mine) < SAME_SPACE_COSINE
    assert agreement(mine[::-1].copy(), mine) < SAME_SPACE_COSINE  # rows matched by text
    assert agreement(np.ones((8, 768), np.float32), mine) == -1.0
