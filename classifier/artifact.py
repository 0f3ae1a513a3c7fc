"""The committed head artifact (``classifier/data/default_head.npz``).

It holds the fitted head, and — so that adding examples or categories at run
time can retrain without the data set — a compact *corpus*: a stratified
sample of the training vectors quantised to int8 (unit vectors' components lie
well inside [-0.5, 0.5], so one global scale loses < 1 % of a cosine), plus
the seed examples' vectors keyed by text so they need not be re-embedded.
Re-embedding the whole training set at retrain time would cost ~30 s of CPU;
loading the corpus costs milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from classifier.errors import ArtifactError
from classifier.evaluation import Evaluation
from classifier.head import F32, I64, HeadConfig, LinearHead, MixtureHead

DEFAULT_HEAD_FILE = "default_head.npz"
FORMAT = 1


@dataclass(frozen=True)
class Corpus:
    """Training vectors that are not in any definition's examples (e.g. a data set)."""

    vectors: F32  # (m, d)
    categories: tuple[str, ...]  # (m,) category name of each row

    def only(self, names: set[str]) -> Corpus:
        keep = [i for i, c in enumerate(self.categories) if c in names]
        return Corpus(self.vectors[keep], tuple(self.categories[i] for i in keep))

    @classmethod
    def empty(cls, dim: int) -> Corpus:
        return cls(np.zeros((0, dim), dtype=np.float32), ())


@dataclass(frozen=True)
class HeadArtifact:
    head: MixtureHead
    corpus: Corpus
    example_vectors: dict[str, F32]
    embedder: str
    evaluation: Evaluation | None
    meta: dict[str, Any]

    @property
    def config(self) -> HeadConfig:
        """The fitting knobs the head was built with (refits at run time reuse them)."""
        known = set(HeadConfig.__dataclass_fields__)
        return HeadConfig(
            **{k: v for k, v in self.meta.get("head_config", {}).items() if k in known}
        )


def save_artifact(path: Path | IO[bytes], art: HeadArtifact) -> None:
    labels = art.head.labels
    scale = 127.0 / max(float(np.abs(art.corpus.vectors).max(initial=1e-6)), 1e-6)
    texts = list(art.example_vectors)
    dim = art.head.dim
    examples = np.stack([art.example_vectors[t] for t in texts]) if texts else np.zeros((0, dim))
    meta = dict(art.meta)
    meta.update(
        format=FORMAT,
        embedder=art.embedder,
        evaluation=art.evaluation.to_dict() if art.evaluation else None,
    )
    np.savez_compressed(
        path,
        labels=np.array(labels),
        weights=art.head.linear.weights,
        bias=art.head.linear.bias,
        parent=art.head.parent,
        corpus_q=np.round(art.corpus.vectors * scale).astype(np.int8),
        corpus_scale=np.float32(scale),
        corpus_labels=np.array([labels.index(c) for c in art.corpus.categories], dtype=np.int16),
        example_texts=np.array(texts),
        example_vectors=examples.astype(np.float16),
        meta=np.array(json.dumps(meta)),
    )


def load_artifact(path: Path | IO[bytes]) -> HeadArtifact:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read classifier head artifact {path}: {exc}") from exc
    try:
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != FORMAT:
            raise ArtifactError(f"head artifact format {meta.get('format')} != {FORMAT}")
        labels = tuple(str(s) for s in data["labels"])
        parent: I64 = data["parent"].astype(np.int64)
        linear = LinearHead(
            tuple(f"{labels[p]}#{i}" for i, p in enumerate(parent)),
            data["weights"].astype(np.float32),
            data["bias"].astype(np.float32),
        )
        vectors = data["corpus_q"].astype(np.float32) / float(data["corpus_scale"])
        corpus = Corpus(_unit(vectors), tuple(labels[i] for i in data["corpus_labels"]))
        examples = _unit(data["example_vectors"].astype(np.float32))
        example_vectors = {str(t): examples[i] for i, t in enumerate(data["example_texts"])}
        evaluation = Evaluation.from_dict(meta["evaluation"]) if meta.get("evaluation") else None
    except (KeyError, IndexError, TypeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"classifier head artifact {path} is incomplete: {exc}") from exc
    return HeadArtifact(
        head=MixtureHead(labels, linear, parent),
        corpus=corpus,
        example_vectors=example_vectors,
        embedder=str(meta.get("embedder", "")),
        evaluation=evaluation,
        meta=meta,
    )


def load_default_artifact() -> HeadArtifact:
    source = resources.files("classifier") / "data" / DEFAULT_HEAD_FILE
    with source.open("rb") as f:
        return load_artifact(f)


def _unit(x: npt.NDArray[np.float32]) -> F32:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.clip(norms, 1e-12, None), dtype=np.float32)
