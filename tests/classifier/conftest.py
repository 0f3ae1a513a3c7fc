from __future__ import annotations

from collections.abc import Callable

import pytest

from backends import OnnxEmbedder
from classifier import Classification, Classifier


@pytest.fixture(scope="session")
def default_classifier(embedder: OnnxEmbedder) -> Classifier:
    """The committed head; tests that change categories build their own instance."""
    return Classifier.load_default(embed=embedder.embed_batch)


@pytest.fixture(scope="session")
def classify(
    embedder: OnnxEmbedder, default_classifier: Classifier
) -> Callable[..., Classification]:
    """Embed a text and classify it with the default classifier."""

    def run(text: str, context: tuple[str, ...] = ()) -> Classification:
        vector = embedder.embed_batch([text])[0]
        return default_classifier.classify(vector, text, context=context)

    return run
