"""The feature vector the learned equivalence scorer reads for one pair.

A few lexical facts the embedding cannot see (word overlap, length, which
side states a number or a name, how the question opens), then the cosine and
the symmetric interactions of the two vectors, ``|u - v|`` and ``u * v``, as in
sentence-pair classifiers since InferSent. Every feature is symmetric in the
two texts, so the verdict does not depend on which one was cached first.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cache.equivalence_text import (
    TextSignature,
    content_difference,
    unmatched_entities,
)


def _words(text: str) -> list[str]:
    return text.split()


_STOPWORDS = frozenset(
    _words(
        "a an the is are was were be been am do does did i you he she it we they my your his her "
        "its our their me to of in on at for with by from and or but if what how why who when "
        "where which that this these those can could should would will shall may might must "
        "there any some so as about into than then not no"
    )
)

LEXICAL_NAMES: tuple[str, ...] = (
    "cosine",
    "jaccard",
    "content_jaccard",
    "bigram_jaccard",
    "trigram_char_jaccard",
    "long_word_jaccard",
    "long_word_difference",
    "length_ratio",
    "log_length_gap",
    "content_difference",
    "same_first_word",
    "numbers_one_side",
    "numbers_both_equal",
    "negation_one_side",
    "negation_both",
    "entities_unmatched",
    "entities_shared",
    "units_one_side",
)


def _jaccard(a: set[str] | frozenset[str], b: set[str] | frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def lexical_features(a: TextSignature, b: TextSignature, cosine: float) -> list[float]:
    """The scalar features, in the order of :data:`LEXICAL_NAMES`."""
    words_a = {w for w in a.tokens if w.isalnum()}
    words_b = {w for w in b.tokens if w.isalnum()}
    bigrams_a = set(zip(a.tokens, a.tokens[1:], strict=False))
    bigrams_b = set(zip(b.tokens, b.tokens[1:], strict=False))
    len_a, len_b = max(len(a.tokens), 1), max(len(b.tokens), 1)
    # Long words stand in for rare ones (no vocabulary table is shipped).
    long_a = {w for w in words_a if len(w) >= 6}
    long_b = {w for w in words_b if len(w) >= 6}
    text_a, text_b = " ".join(a.tokens), " ".join(b.tokens)
    grams_a = {text_a[i : i + 3] for i in range(len(text_a) - 2)}
    grams_b = {text_b[i : i + 3] for i in range(len(text_b) - 2)}
    unmatched = len(unmatched_entities(a, b)) + len(unmatched_entities(b, a))
    return [
        cosine,
        _jaccard(words_a, words_b),
        _jaccard(words_a - _STOPWORDS, words_b - _STOPWORDS),
        _jaccard({" ".join(g) for g in bigrams_a}, {" ".join(g) for g in bigrams_b}),
        _jaccard(grams_a, grams_b),
        _jaccard(long_a, long_b),
        float(np.log1p(len(long_a ^ long_b))),
        min(len_a, len_b) / max(len_a, len_b),
        abs(float(np.log(len_a / len_b))),
        float(np.log1p(content_difference(a, b))),
        float(bool(a.tokens) and bool(b.tokens) and a.tokens[0] == b.tokens[0]),
        float(bool(a.numbers) != bool(b.numbers)),
        float(bool(a.numbers) and a.numbers == b.numbers),
        float(bool(a.negation) != bool(b.negation)),
        float(bool(a.negation) and bool(b.negation)),
        float(np.log1p(unmatched)),
        float(np.log1p(len(a.entities & b.entities))),
        float(bool(a.units) != bool(b.units)),
    ]


def pair_features(
    a: TextSignature,
    b: TextSignature,
    u: npt.NDArray[np.float32],
    v: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """Lexical features, then ``|u - v|``, then ``u * v`` (unit vectors ``u``, ``v``)."""
    cosine = float(np.dot(u, v))
    lexical = np.asarray(lexical_features(a, b, cosine), dtype=np.float32)
    return np.concatenate([lexical, np.abs(u - v), u * v]).astype(np.float32, copy=False)
