"""Which vector space an embedder writes in, told by how it embeds a few fixed texts.

Everything cachegate learned offline — the classifier, the equivalence check, the
router — was fitted on all-MiniLM-L6-v2 vectors, and a cache store holds the vectors of
whichever embedder wrote them. Another model of the same dimension (a multilingual
MiniLM is 384-wide too) produces vectors that compare without error and mean nothing
against those, so the space is checked where it can go wrong: at start-up, against the
bundled artifacts and against the store. A name cannot tell (the same model runs under
ONNX Runtime or sentence-transformers, from any path); the vectors of :data:`PROBES`
can: the same model gives near-identical vectors for them (cosine above 0.99 across
runtimes and quantisations), another model unrelated ones. Comparing two probes, and
the threshold for "the same space", are ``cache.vector_space``'s (one rule for the
artifacts and the store).

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
REFERENCE = "minilm_probe.npz"


def probe(embedder: Embedder) -> Matrix:
    """The embedder's vectors of :data:`PROBES`, one row each."""
    return np.asarray(embedder.embed_batch(list(PROBES)), dtype=np.float32)


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
