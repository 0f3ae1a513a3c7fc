"""Embeds data-set texts once and keeps the vectors on disk.

Benchmarks and artifact-fitting scripts embed the same tens of thousands of
texts from ``../shared/data``; on a 2-core machine that costs minutes, so the
vectors are cached under ``~/.cache/cachegate/emb`` keyed by the model name
and a digest of the texts. Delete the folder to recompute.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from backends import Embedder, Matrix, OnnxEmbedder

CACHE_DIR = Path(os.environ.get("CACHEGATE_EMB_CACHE", Path.home() / ".cache/cachegate/emb"))
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

_default: Embedder | None = None


def default_embedder() -> Embedder:
    """The bundled embedder; with ``CACHEGATE_EMBED_QUANTIZE=int8`` in the environment, its
    int8 variant (``embedder.quantize: int8``), so that the quality benchmarks can score it."""
    global _default  # one model per process; scripts call this many times
    if _default is None:
        _default = OnnxEmbedder(quantize=os.environ.get("CACHEGATE_EMBED_QUANTIZE", "none"))
    return _default


def embed_texts(texts: Sequence[str], embedder: Embedder | None = None, batch: int = 64) -> Matrix:
    """Vectors for ``texts`` (row i for texts[i]), from disk when computed before."""
    embedder = embedder or default_embedder()
    digest = hashlib.sha256()
    digest.update(embedder.name.encode())
    for t in texts:
        digest.update(t.encode())
        digest.update(b"\0")
    path = CACHE_DIR / f"{embedder.name}-{digest.hexdigest()[:24]}.npy"
    if path.exists():
        cached: Matrix = np.load(path)
        return cached
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    # Sort by length so each batch pads little.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        out[idx] = embedder.embed_batch([texts[i] for i in idx])
        if start // batch % 50 == 0:
            print(f"\rembedding {start}/{len(texts)}", end="", file=sys.stderr, flush=True)
    print(f"\rembedded {len(texts)} texts", file=sys.stderr)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out
