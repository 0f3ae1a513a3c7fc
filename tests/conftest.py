from __future__ import annotations

from collections.abc import Iterator

import pytest

from backends import OnnxEmbedder


@pytest.fixture(scope="session")
def embedder() -> OnnxEmbedder:
    """The real bundled MiniLM, loaded once for the whole run."""
    return OnnxEmbedder()


@pytest.fixture
def stack(embedder: OnnxEmbedder) -> Iterator[object]:
    from tests.stack import Stack

    with Stack(embedder) as s:
        yield s
