from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from backends import OnnxEmbedder
from router import RouteFeatures, Router, load_router

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def embedder() -> OnnxEmbedder:
    return OnnxEmbedder()


@pytest.fixture(scope="session")
def default_router() -> Router:
    return load_router()


@pytest.fixture(scope="session")
def features_for(embedder: OnnxEmbedder):  # type: ignore[no-untyped-def]
    def make(texts: Sequence[str], category: str = "general") -> list[RouteFeatures]:
        vectors = np.asarray(embedder.embed_batch(list(texts)), dtype=np.float32)
        return [
            RouteFeatures(vector=v, category=category, prompt_tokens=max(1, len(t) // 4))
            for v, t in zip(vectors, texts, strict=True)
        ]

    return make
