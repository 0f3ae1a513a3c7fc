from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from backends import EmbedderError, OnnxEmbedder
from backends.batcher import BatchingEmbedder
from backends.embedding import length_buckets
from backends.space import probe, reference_probe
from cache import VectorSpace
from cache.vector_space import SAME_SPACE_COSINE

SHORT = ["What is the capital of France?", "How do I boil an egg?", "Who wrote Hamlet?"]
LONG = " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 20)


def test_length_buckets_cover_every_row_once_and_bound_padding() -> None:
    lengths = [12, 250, 14, 9, 13, 200, 40, 12]
    groups = length_buckets(lengths)
    rows = sorted(r for g in groups for r in g)
    assert rows == list(range(len(lengths)))
    for g in groups:
        shortest, longest = min(lengths[r] for r in g), max(lengths[r] for r in g)
        assert longest <= 1.3 * shortest + 4
    # the short questions share one call; the long texts are not padded into it
    assert {3, 0, 7, 4, 2} in [set(g) for g in groups]


def test_mixed_length_batch_equals_one_at_a_time(embedder: OnnxEmbedder) -> None:
    texts = [SHORT[0], LONG, SHORT[1], SHORT[2]]
    together = embedder.embed_batch(texts)
    alone = np.stack([embedder.embed_batch([t])[0] for t in texts])
    assert together.shape == (4, embedder.dim)
    np.testing.assert_allclose(together, alone, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_concurrent_callers_share_calls_and_get_their_own_vector(embedder: OnnxEmbedder) -> None:
    async def run() -> tuple[list[np.ndarray], int]:
        batcher = BatchingEmbedder(embedder)
        try:
            vectors = await asyncio.gather(*(batcher.embed(t) for t in SHORT * 4))
            return list(vectors), batcher.batches
        finally:
            await batcher.close()

    vectors, batches = asyncio.run(run())
    assert batches < len(vectors)  # callers that queued together shared a model call
    expected = embedder.embed_batch(SHORT)
    for k, vec in enumerate(vectors):
        assert float(vec @ expected[k % 3]) == pytest.approx(1.0, abs=1e-3)


def test_int8_embedder_stays_in_the_float_models_space(
    embedder: OnnxEmbedder, int8_embedder: OnnxEmbedder
) -> None:
    texts = [
        "How do I reverse a list in Python?",
        "How can I reverse a list in Python?",
        "What is the capital of France?",
        "Tell me a joke about cats.",
    ]
    exact, quick = embedder.embed_batch(texts), int8_embedder.embed_batch(texts)
    assert int8_embedder.name == "all-MiniLM-L6-v2-int8-dynamic"
    assert np.allclose(np.linalg.norm(quick, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(exact * quick, axis=1)) > 0.97  # each text: nearly the same vector
    assert np.max(np.abs(exact - quick)) > 1e-4  # ... but int8 arithmetic did run
    quick_space = VectorSpace(int8_embedder.name, probe(int8_embedder))
    assert quick_space.agreement(VectorSpace("ref", reference_probe())) >= SAME_SPACE_COSINE
    # Paraphrase above unrelated, across the two: a float store answers int8 queries.
    cross = quick @ exact.T
    assert cross[1, 0] > 0.9 and cross[1, 0] > cross[1, 2] + 0.5


def test_unknown_quantisation_is_refused() -> None:
    with pytest.raises(EmbedderError, match="none or int8"):
        OnnxEmbedder(quantize="int4")


def test_missing_or_broken_model_file_is_an_embedder_error(tmp_path: Path) -> None:
    # ONNX Runtime's own exceptions (NoSuchFile, InvalidProtobuf) derive from Exception
    # only; they must still arrive as EmbedderError, which start-up reports in one line.
    with pytest.raises(EmbedderError, match="cannot load ONNX model"):
        OnnxEmbedder(tmp_path / "nowhere.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(EmbedderError, match="cannot load ONNX model"):
        OnnxEmbedder(broken)
