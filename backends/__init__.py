"""Clients for model servers and the local embedding models.

Knows nothing about caching or routing. aiohttp and ONNX Runtime errors are
translated here into :mod:`backends.errors`.
"""

from backends.batcher import BatchingEmbedder, BatchLimits
from backends.embedding import (
    Embedder,
    Matrix,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    Vector,
    default_model_path,
    default_tokenizer_path,
)
from backends.errors import (
    BackendError,
    EmbedderError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamStreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = [
    "BackendError",
    "BatchLimits",
    "BatchingEmbedder",
    "Embedder",
    "EmbedderError",
    "Matrix",
    "OnnxEmbedder",
    "SentenceTransformerEmbedder",
    "UpstreamError",
    "UpstreamStatusError",
    "UpstreamStreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "Vector",
    "default_model_path",
    "default_tokenizer_path",
]
