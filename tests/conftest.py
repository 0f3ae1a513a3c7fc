from __future__ import annotations

from collections.abc import Iterator

import pytest

from backends import OnnxEmbedder
from tests.pg import pg_server, pg_url  # noqa: F401  (session PostgreSQL fixtures for every package)
from tests.stack import Stack


@pytest.fixture(scope="session")
def embedder() -> OnnxEmbedder:
    """The real bundled MiniLM, loaded once for the whole run."""
    return OnnxEmbedder()


@pytest.fixture(scope="session")
def int8_embedder() -> OnnxEmbedder:
    """The same model with int8 arithmetic (embedder.quantize: int8), built once."""
    return OnnxEmbedder(quantize="int8", device="cpu")


@pytest.fixture
def stack(embedder: OnnxEmbedder) -> Iterator[Stack]:
    with Stack(embedder) as s:
        yield s
