"""Which vector space an embedder writes in, told by how it embeds a few fixed texts.

Everything cachegate learned offline — the classifier, the equivalence check, the
router — was fitted on all-MiniLM-L6-v2 vectors, and a cache store holds the vectors of
whichever embedder wrote them. Another model of the same dimension (a multilingual
MiniLM is 384-wide too) produces vectors that compare without error and mean nothing
against those, so the space is checked where it can go wrong: at start-up, against the
bundled artifacts and against the store. A name cannot tell (the same model runs under
ONNX Runtime or sentence-transformers, from any path); the vectors of :data:`PROBES`
can: the same model gives near-identical vectors for them (cosine above 0.99 across
runtimes and quantisations), another model unrelated ones.

``python -m backends.space`` rewrites ``backends/data/minilm_probe.npz`` from the
bundled embedder.
"""

from __future__ import annotations

import importlib.resources
import io
from pathlib import Path

import numpy as np

from backends.embedding import Embedder, Matrix
from backends.errors import EmbedderError

# Short and long, questions and statements, code, numbers, two languages: texts on
# which two different models are unlikely to agree by chance.
PROBES: tuple[str, ...] = (
    "What is the capital of France?",
    "How do I reverse a list in Python?",
    "def add(a, b):\n    return a + b",
    "The invoice of 17 March totals 1,250.40 euros, payable within 30 days.",
    "Tell me a joke about cats.",
    "¿Dónde está la estación de tren más cercana?",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Is it safe to drink coffee during pregnancy?",
)
# Lowest per-probe cosine at which two embedders count as writing the same space. The
# bundled export against the same model with int8 activations too measured 0.992 at
# worst; unrelated vectors (another model, or the probes in another order) about 0.
SAME_SPACE_COSINE = 0.95
REFERENCE = "minilm_probe.npz"


def probe(embedder: Embedder) -> Matrix:
    """The embedder's vectors of :data:`PROBES`, one row each."""
    return np.asarray(embedder.embed_batch(list(PROBES)), dtype=np.float32)


def agreement(a: Matrix, b: Matrix) -> float:
    """The lowest cosine between matching rows of two probe matrices; -1 when their
    shapes differ (another dimension is another space)."""
    if a.shape != b.shape or a.ndim != 2:
        return -1.0
    na = a / np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)
    nb = b / np.clip(np.linalg.norm(b, axis=1, keepdims=True), 1e-12, None)
    return float(np.min(np.sum(na * nb, axis=1)))


def reference_probe() -> Matrix:
    """The bundled embedder's probe vectors (the space of the shipped artifacts)."""
    raw = importlib.resources.files("backends").joinpath("data", REFERENCE).read_bytes()
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return np.asarray(npz["probe"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise EmbedderError(f"unreadable {REFERENCE}: {exc}") from exc


def main() -> None:
    from backends.embedding import OnnxEmbedder

    out = Path(__file__).parent / "data" / REFERENCE
    out.parent.mkdir(exist_ok=True)
    np.savez_compressed(out, probe=probe(OnnxEmbedder()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
