"""The query category classifier: fit from definitions, classify, retrain at run time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence

import numpy as np

from classifier.artifact import Corpus, load_default_artifact
from classifier.definitions import (
    DEFAULT_FALLBACK,
    CategoryDef,
    load_default_definitions,
    merge_definitions,
    validate_definitions,
)
from classifier.errors import DefinitionError, InputError, UnknownCategoryError
from classifier.evaluation import Evaluation, evaluate
from classifier.head import F32, I64, HeadConfig, LinearHead, MixtureHead, fit_mixture_head
from classifier.scoring import Classification, Model

Embed = Callable[[Sequence[str]], F32]
# Chosen by the min_confidence sweep of bench/classifier_eval.py: below it the
# best category is right less often than `general` would be.
DEFAULT_MIN_CONFIDENCE = 0.3


class Classifier:
    """Categorises requests from the vector the embedder already computed plus the text.

    Thread-safe for one writer and many readers: :meth:`classify` reads one
    immutable :class:`~classifier.scoring.Model`; every change refits a new one
    (about a second for ~10k examples) and swaps it in.
    """

    def __init__(
        self,
        model: Model,
        *,
        embed: Embed | None,
        corpus: Corpus,
        example_vectors: dict[str, F32],
        config: HeadConfig | None = None,
        evaluation: Evaluation | None = None,
    ) -> None:
        self._model = model
        self._embed = embed
        self._corpus = corpus
        self._vectors = dict(example_vectors)
        self._config = config or HeadConfig()
        self._evaluation = evaluation
        self._lock = threading.Lock()
        self._changed_at = 0.0

    # -- construction ----------------------------------------------------------------

    @classmethod
    def load_default(
        cls,
        embed: Embed | None = None,
        *,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        extra: Sequence[CategoryDef] = (),
        replace: Collection[str] = (),
    ) -> Classifier:
        """The committed head and definitions.

        ``extra`` definitions (from config) are merged in: one with a default's name
        extends it (examples, keywords, patterns added), unless its name is in
        ``replace``, which drops the default definition *and* its corpus rows. Any
        ``extra`` triggers one retrain, which needs ``embed`` for new examples.
        """
        art = load_default_artifact()
        defs = validate_definitions(load_default_definitions(), DEFAULT_FALLBACK)
        if tuple(d.name for d in defs) != art.head.labels:
            raise DefinitionError(
                f"default definitions {[d.name for d in defs]} do not match the committed head "
                f"{list(art.head.labels)}; rerun scripts/train_classifier.py"
            )
        model = Model(defs, art.head, DEFAULT_FALLBACK, _check_confidence(min_confidence))
        clf = cls(
            model,
            embed=embed,
            corpus=art.corpus,
            example_vectors=art.example_vectors,
            config=art.config,
            evaluation=art.evaluation,
        )
        if extra or replace:
            unknown = set(replace) - {d.name for d in extra}
            if unknown:
                raise DefinitionError(f"replace names {sorted(unknown)} have no config definition")
            clf._corpus = art.corpus.only({d.name for d in defs} - set(replace))
            clf._refit(merge_definitions(defs, extra, replace=replace))
        return clf

    @classmethod
    def train(
        cls,
        definitions: Sequence[CategoryDef],
        embed: Embed,
        *,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        fallback: str = DEFAULT_FALLBACK,
        default_corpus: bool | Collection[str] = True,
        config: HeadConfig | None = None,
        validate: bool = False,
    ) -> Classifier:
        """Fit a head from ``definitions``' examples (embedded with ``embed``).

        ``default_corpus`` adds the committed corpus vectors of the default
        categories with the same names (True: all of them; a collection: only
        those names; False: none), so a config that extends ``code`` keeps the
        thousands of data-set examples behind it.
        """
        defs = validate_definitions(list(definitions), fallback)
        art = load_default_artifact() if default_corpus else None
        names = {d.name for d in defs}
        if default_corpus is not True and not isinstance(default_corpus, bool):
            names &= set(default_corpus)
        corpus = art.corpus.only(names) if art else Corpus.empty(0)
        placeholder = Model(defs, _untrained(defs), fallback, _check_confidence(min_confidence))
        clf = cls(
            placeholder,
            embed=embed,
            corpus=corpus,
            example_vectors=art.example_vectors if art else {},
            config=config or (art.config if art else None),
        )
        clf._refit(defs, validate=validate)
        return clf

    # -- the request path ------------------------------------------------------------

    def classify(
        self,
        vector: F32,
        text: str,
        context: Sequence[str] = (),
        *,
        context_vector: F32 | None = None,
    ) -> Classification:
        """Category of the latest user turn (``vector`` is its embedding, ``text`` its
        text); ``context`` holds the earlier user turns' texts, oldest first."""
        return self._model.classify(vector, text, context, context_vector)

    def head_probabilities(self, vectors: F32) -> F32:
        """The head's category probabilities for a batch of vectors, without text
        signals (for evaluation, and as router features); columns follow
        :attr:`categories`."""
        if vectors.ndim != 2 or vectors.shape[1] != self._model.head.dim:
            raise InputError(f"vectors must have shape (n, {self._model.head.dim})")
        return self._model.head.probabilities(vectors.astype(np.float32, copy=False))

    # -- run-time changes (each refits) ----------------------------------------------

    @property
    def categories(self) -> list[CategoryDef]:
        return list(self._model.definitions)

    @property
    def fallback(self) -> str:
        return self._model.fallback

    @property
    def min_confidence(self) -> float:
        return self._model.min_confidence

    @property
    def last_evaluation(self) -> Evaluation | None:
        return self._evaluation

    @property
    def changed_at(self) -> float:
        """Epoch seconds of the last change at run time (0.0: as loaded). Answers cached
        before it were filed under categories this classifier may no longer give."""
        return self._changed_at

    def set_min_confidence(self, value: float) -> None:
        m = self._model
        self._model = Model(m.definitions, m.head, m.fallback, _check_confidence(value))
        self._changed_at = time.time()

    def add_examples(self, name: str, examples: Sequence[str]) -> Evaluation:
        d = self._get(name)
        return self._replace(
            d,
            CategoryDef(
                d.name, d.description, d.examples + tuple(examples), d.keywords, d.patterns
            ),
        )

    def remove_examples(self, name: str, examples: Sequence[str]) -> Evaluation:
        d = self._get(name)
        drop = {e.strip() for e in examples}
        kept = tuple(e for e in d.examples if e not in drop)
        return self._replace(d, CategoryDef(d.name, d.description, kept, d.keywords, d.patterns))

    def add_category(self, definition: CategoryDef) -> Evaluation:
        if not definition.examples:
            raise DefinitionError(f"category {definition.name!r}: a new category needs examples")
        if any(d.name == definition.name for d in self._model.definitions):
            raise DefinitionError(f"category {definition.name!r} already exists")
        return self._refit([*self._model.definitions, definition])

    def remove_category(self, name: str) -> Evaluation:
        self._get(name)
        if name == self._model.fallback:
            raise DefinitionError(f"cannot remove the fallback category {name!r}")
        return self._refit([d for d in self._model.definitions if d.name != name])

    def retrain(self, *, validate: bool = False) -> Evaluation:
        return self._refit(list(self._model.definitions), validate=validate)

    # -- internals ---------------------------------------------------------------------

    def _get(self, name: str) -> CategoryDef:
        for d in self._model.definitions:
            if d.name == name:
                return d
        raise UnknownCategoryError(f"no category named {name!r}")

    def _replace(self, old: CategoryDef, new: CategoryDef) -> Evaluation:
        return self._refit([new if d is old else d for d in self._model.definitions])

    def _refit(self, definitions: Sequence[CategoryDef], *, validate: bool = False) -> Evaluation:
        with self._lock:
            defs = validate_definitions(list(definitions), self._model.fallback)
            x, y, weight, labels = self._training_set(defs)
            started = time.perf_counter()
            if validate:
                evaluation = _holdout(x, y, weight, labels, self._config)
            head = fit_mixture_head(x, y, labels, self._config, weight)
            seconds = time.perf_counter() - started
            if not validate:
                predicted = head.probabilities(x).argmax(axis=1)
                evaluation = evaluate(
                    [labels[i] for i in y],
                    [labels[i] for i in predicted],
                    labels,
                    kind="training",
                    fit_seconds=seconds,
                )
            self._model = Model(defs, head, self._model.fallback, self._model.min_confidence)
            self._changed_at = time.time()
            # A removed category's corpus rows are forgotten: re-adding the name later
            # starts from its new examples only.
            self._corpus = self._corpus.only(set(labels))
            self._evaluation = evaluation
            return evaluation

    def _training_set(self, defs: Sequence[CategoryDef]) -> tuple[F32, I64, F32, tuple[str, ...]]:
        labels = tuple(d.name for d in defs)
        missing = [e for d in defs for e in d.examples if e not in self._vectors]
        if missing:
            if self._embed is None:
                raise InputError("new examples need an embed function (pass embed=...)")
            vectors = np.asarray(self._embed(missing), dtype=np.float32)
            dim = self._corpus.vectors.shape[1] if len(self._corpus.categories) else None
            if (
                vectors.ndim != 2
                or vectors.shape[0] != len(missing)
                or (dim is not None and vectors.shape[1] != dim)
            ):
                raise InputError(
                    f"embed returned shape {vectors.shape} for {len(missing)} texts"
                    + (f" (expected width {dim})" if dim else "")
                )
            self._vectors.update(zip(missing, vectors, strict=True))
        corpus = self._corpus.only(set(labels))
        texts = [e for d in defs for e in d.examples]
        rows = [self._vectors[e] for e in texts]
        dim = corpus.vectors.shape[1] if len(corpus.categories) else len(rows[0])
        x = np.vstack([corpus.vectors.reshape(-1, dim), np.asarray(rows, dtype=np.float32)])
        names = list(corpus.categories) + [d.name for d in defs for _ in d.examples]
        y = np.array([labels.index(n) for n in names], dtype=np.int64)
        weight = np.ones(len(y), dtype=np.float32)
        weight[len(corpus.categories) :] = self._config.example_weight
        return x.astype(np.float32), y, weight, labels


def _holdout(
    x: F32, y: I64, weight: F32, labels: tuple[str, ...], config: HeadConfig
) -> Evaluation:
    """Fit on a stratified 80 % and score on the rest."""
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), dtype=bool)
    for k in range(len(labels)):
        rows = np.flatnonzero(y == k)
        rng.shuffle(rows)
        test[rows[: len(rows) // 5]] = True
    started = time.perf_counter()
    head = fit_mixture_head(x[~test], y[~test], labels, config, weight[~test])
    seconds = time.perf_counter() - started
    predicted = head.probabilities(x[test]).argmax(axis=1)
    return evaluate(
        [labels[i] for i in y[test]], [labels[i] for i in predicted], labels, fit_seconds=seconds
    )


def _untrained(defs: Sequence[CategoryDef]) -> MixtureHead:
    labels = tuple(d.name for d in defs)
    linear = LinearHead(
        labels, np.zeros((1, len(labels)), np.float32), np.zeros(len(labels), np.float32)
    )
    return MixtureHead(labels, linear, np.arange(len(labels), dtype=np.int64))


def _check_confidence(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise InputError(f"min_confidence must be within [0, 1], got {value}")
    return float(value)
