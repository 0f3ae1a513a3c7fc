"""The feature vectors the learned equivalence scorer reads for one pair.

Two stages read them. The embedding network gets a few lexical facts the
embedding cannot see (word overlap, length, which side states a number or a
name, how the question opens), then the cosine and the symmetric interactions
of the two vectors, ``|u - v|`` and ``u * v``, as in sentence-pair classifiers
since InferSent (:func:`pair_features`). The boosted trees get those lexical
facts, the network's logit, and the Quora-duplicate features of the Kaggle era
(:func:`tree_features`): overlap weighted by inverse document frequency (from
a hashed table fitted on non-Quora text), the rarest unshared word, question
words, shared bigrams, prefix and suffix, edit-distance ratios, and which
soft veto fired, unshared words written like names, and the cosine of the two
vectors after a linear map fitted to QQP labels (:func:`adapted_cosine`). Every feature is symmetric in the two texts, so the verdict
does not depend on which one was cached first.
"""

from __future__ import annotations

import cydifflib
import numpy as np
import numpy.typing as npt

from cache.equivalence_text import (
    STOPWORDS,
    Lexicon,
    TextSignature,
    content_difference,
    idf_bucket,
    mismatch_kind,
    unmatched_entities,
)

VETO_KINDS = ("number", "operator", "negation", "unit", "entity")


def _words(text: str) -> list[str]:
    return text.split()


_STOPWORDS = STOPWORDS

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
    return network_features(lexical_features(a, b, float(np.dot(u, v))), u, v)


def network_features(
    lexical: list[float], u: npt.NDArray[np.float32], v: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """The embedding network's input from already computed lexical features."""
    x = np.asarray(lexical, dtype=np.float32)
    return np.concatenate([x, np.abs(u - v), u * v]).astype(np.float32, copy=False)


_QUESTION_WORDS = frozenset(
    _words("what how why when which who whom whose where can is are does do did should would will")
)

TREE_NAMES: tuple[str, ...] = (
    *LEXICAL_NAMES,
    "idf_share",
    "idf_unshared_log",
    "idf_unshared_max",
    "idf_unshared_min",
    "content_shared",
    "content_unshared",
    "same_first_question_word",
    "same_question_words",
    "word_gap",
    "char_gap",
    "min_words",
    "max_words",
    "shared_bigrams",
    "contains",
    "prefix_share",
    "suffix_share",
    "shared_words",
    "sequence_ratio",
    "sorted_sequence_ratio",
    *(f"mismatch_{kind}" for kind in VETO_KINDS),
    "names_unshared_max",
    "names_unshared_min",
    "proper_unshared_max",
    "adapted_cosine",
    "network_logit",
)


def _shared_run(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    run = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        run += 1
    return run


def _ratio(x: str, y: str) -> float:
    # SequenceMatcher breaks ties by argument order: sort them for symmetry. cydifflib is
    # difflib's algorithm in C++ with identical ratios (checked on 8,000 QQP and GPTCache
    # pairs) at an eighth of the cost: pure-Python difflib was 80 % of a check's time.
    first, second = sorted((x, y))
    return float(cydifflib.SequenceMatcher(None, first, second, autojunk=False).ratio())


def tree_features(
    a: TextSignature,
    b: TextSignature,
    lexical: list[float],
    lexicon: Lexicon,
    adapted_cosine: float,
    network_logit: float,
) -> npt.NDArray[np.float64]:
    """The boosted trees' input, in the order of :data:`TREE_NAMES`."""
    idf, proper = lexicon.idf, lexicon.proper
    words_a = {w for w in a.tokens if w.isalnum()}
    words_b = {w for w in b.tokens if w.isalnum()}
    weight_a = {w: float(idf[idf_bucket(w)]) for w in words_a}
    weight_b = {w: float(idf[idf_bucket(w)]) for w in words_b}
    shared = words_a & words_b
    total = sum(weight_a.values()) + sum(weight_b.values())
    only_a = [weight_a[w] for w in words_a - words_b]
    only_b = [weight_b[w] for w in words_b - words_a]
    rare_a, rare_b = max(only_a, default=0.0), max(only_b, default=0.0)
    content_a, content_b = words_a - _STOPWORDS, words_b - _STOPWORDS
    question_a = [w for w in a.tokens if w in _QUESTION_WORDS]
    question_b = [w for w in b.tokens if w in _QUESTION_WORDS]
    text_a, text_b = " ".join(a.tokens), " ".join(b.tokens)
    len_a, len_b = len(a.tokens), len(b.tokens)
    shortest = max(min(len_a, len_b), 1)
    bigrams_a = set(zip(a.tokens, a.tokens[1:], strict=False))
    bigrams_b = set(zip(b.tokens, b.tokens[1:], strict=False))
    kind = mismatch_kind(a, b)
    # Unshared content words written like names (or rare): a swapped name that the
    # vetoes let through (rephrased texts) is still visible to the trees.
    names_a = [w for w in content_a - content_b if lexicon.names_a_thing(w)]
    names_b = [w for w in content_b - content_a if lexicon.names_a_thing(w)]
    unshared = content_a ^ content_b
    extra = [
        2 * sum(weight_a[w] for w in shared) / total if total else 1.0,
        float(np.log1p(sum(only_a) + sum(only_b))),
        max(rare_a, rare_b),
        min(rare_a, rare_b),
        float(len(content_a & content_b)),
        float(len(content_a ^ content_b)),
        float(question_a[:1] == question_b[:1]),
        float(set(question_a) == set(question_b)),
        float(abs(len_a - len_b)),
        float(abs(len(text_a) - len(text_b))),
        float(min(len_a, len_b)),
        float(max(len_a, len_b)),
        float(len(bigrams_a & bigrams_b)),
        float(text_a in text_b or text_b in text_a),
        _shared_run(a.tokens, b.tokens) / shortest,
        _shared_run(a.tokens[::-1], b.tokens[::-1]) / shortest,
        float(len(shared)),
        _ratio(text_a, text_b),
        _ratio(" ".join(sorted(a.tokens)), " ".join(sorted(b.tokens))),
        *(float(kind == k) for k in VETO_KINDS),
        float(max(len(names_a), len(names_b))),
        float(min(len(names_a), len(names_b))),
        max((float(proper[idf_bucket(w)]) for w in unshared), default=0.0),
        adapted_cosine,
        network_logit,
    ]
    return np.asarray(lexical + extra, dtype=np.float32).astype(np.float64)


def adapted_cosine(
    adapter: npt.NDArray[np.float32], u: npt.NDArray[np.float32], v: npt.NDArray[np.float32]
) -> float:
    """Cosine of ``adapter @ u`` and ``adapter @ v``: a metric learned on the embeddings.

    The map (k x dim) is fitted so that this cosine separates duplicates from look-alike
    questions better than the raw cosine does (``scripts/train_equivalence.py``).
    """
    pu, pv = adapter @ u, adapter @ v
    norm = float(np.sqrt((pu @ pu) * (pv @ pv)))
    return float(pu @ pv) / norm if norm > 0.0 else 0.0
