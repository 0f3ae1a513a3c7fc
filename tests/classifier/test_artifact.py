from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classifier import (
    ArtifactError,
    Corpus,
    HeadArtifact,
    load_artifact,
    load_default_definitions,
    save_artifact,
)
from classifier.artifact import load_default_artifact
from classifier.head import HeadConfig, fit_mixture_head


def _toy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    centres = np.eye(8, dtype=np.float32)[:3]
    x = np.repeat(centres, 50, axis=0) + 0.05 * rng.standard_normal((150, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(3), 50)


def test_head_fits_separable_data_and_round_trips(tmp_path: Path) -> None:
    x, y = _toy()
    head = fit_mixture_head(x, y, ("a", "b", "c"), HeadConfig(iterations=100))
    assert (head.probabilities(x).argmax(axis=1) == y).all()
    art = HeadArtifact(head, Corpus(x, tuple("abc"[i] for i in y)), {"hello": x[0]}, "toy",
                       None, {"head_config": {"l2": 0.01}})  # fmt: skip
    path = tmp_path / "head.npz"
    save_artifact(path, art)
    back = load_artifact(path)
    assert back.head.labels == ("a", "b", "c")
    np.testing.assert_allclose(back.head.probabilities(x), head.probabilities(x), atol=1e-5)
    assert back.corpus.categories == art.corpus.categories
    assert float(np.abs(back.corpus.vectors - x).max()) < 0.02  # int8 quantisation
    assert back.config.l2 == 0.01
    assert set(back.example_vectors) == {"hello"}


def test_corrupt_artifact_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(ArtifactError):
        load_artifact(path)


def test_committed_artifact_matches_the_committed_definitions() -> None:
    art = load_default_artifact()
    defs = load_default_definitions()
    assert art.head.labels == tuple(d.name for d in defs)
    # Every seed example has its vector stored: rerun scripts/train_classifier.py
    # after editing classifier/data/default_categories.yaml.
    assert set(art.example_vectors) == {e for d in defs for e in d.examples}
    assert art.evaluation is not None and art.evaluation.kind == "holdout"
