"""The equivalence check: paraphrases pass, answer-changing edits never do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from backends import OnnxEmbedder
from cache.equivalence import EquivalenceChecker, EquivalenceError, EquivalenceVerdict
from cache.equivalence_text import hard_mismatch, mismatch_kind, signature
from cache.equivalence_trees import Forest

ROOT = Path(__file__).resolve().parents[2]

# Same question, reworded: the default threshold (precision >= 0.90 on noisy
# QQP labels) is strict, so looser rewordings are checked at 0.5, a value a
# category policy may choose.
NEAR_PARAPHRASES = [
    ("How do I reverse a list in Python?", "How can I reverse a list in Python?"),
    (
        "What are the health benefits of eating apples?",
        "What are the benefits of eating apples for health?",
    ),
]
PARAPHRASES = [
    ("How do I learn Python quickly?", "What is the fastest way to learn Python?"),
    ("What is the capital of France?", "What's the capital city of France?"),
    ("How can I lose weight fast?", "What is the quickest way to lose weight?"),
    (
        "How do I sort a dictionary by value in Python?",
        "How can I sort a Python dict by its values?",
    ),
    ("What is the best way to learn to play the guitar?", "How should I learn to play the guitar?"),
]

# Each pair differs in one answer-changing detail that the embedding barely
# sees (MiniLM separates names more than numbers, so entity pairs reach ~0.9).
CHANGES = [
    ("What is 1234 multiplied by 5678?", "What is 1234 multiplied by 5679?", 0.95, "number"),
    ("What is 17 × 23?", "What is 17 × 24?", 0.9, "number"),
    ("What is 17 × 23?", "What is 17 + 23?", 0.75, "operator"),
    (
        "Is it safe to drink coffee during pregnancy?",
        "Is it not safe to drink coffee during pregnancy?",
        0.95,
        "negation",
    ),
    (
        "Why is my Python script running slowly on Windows?",
        "Why is my Python script not running slowly on Windows?",
        0.95,
        "negation",
    ),
    ("How do I convert 10 km to miles?", "How do I convert 10 miles to km?", 0.95, "unit"),
    ("How much is 100 US dollars in euros?", "How much is 100 euros in US dollars?", 0.95, "unit"),
    (
        "Is 30 degrees Celsius considered hot weather for a summer afternoon walk?",
        "Is 30 degrees Fahrenheit considered hot weather for a summer afternoon walk?",
        0.95,
        "unit",
    ),
    (
        "How do I configure nginx as a reverse proxy for a Node.js application running on Ubuntu?",
        "How do I configure nginx as a reverse proxy for a Node.js application running on CentOS?",
        0.9,
        "entity",
    ),
    (
        "Can you recommend a good restaurant near the main train station in Amsterdam for a family dinner?",
        "Can you recommend a good restaurant near the main train station in Rotterdam for a family dinner?",
        0.85,
        "entity",
    ),
]


@pytest.fixture(scope="session")
def equivalence_embedder() -> Iterator[OnnxEmbedder]:
    yield OnnxEmbedder()


@pytest.fixture(scope="session")
def checker() -> EquivalenceChecker:
    return EquivalenceChecker.load_default()


def _check(
    checker: EquivalenceChecker, embedder: OnnxEmbedder, a: str, b: str, **kw: float
) -> EquivalenceVerdict:
    u, v = embedder.embed_batch([a, b])
    return checker.check(a, u, b, v, **kw)


@pytest.mark.parametrize(("a", "b"), NEAR_PARAPHRASES)
def test_near_paraphrases_pass_the_default_threshold(
    checker: EquivalenceChecker, equivalence_embedder: OnnxEmbedder, a: str, b: str
) -> None:
    verdict = _check(checker, equivalence_embedder, a, b)
    assert verdict.reason == "model"
    assert verdict.equivalent, verdict


@pytest.mark.parametrize(("a", "b"), PARAPHRASES)
def test_paraphrases_pass_a_looser_threshold(
    checker: EquivalenceChecker, equivalence_embedder: OnnxEmbedder, a: str, b: str
) -> None:
    verdict = _check(checker, equivalence_embedder, a, b, threshold=0.5)
    assert verdict.reason == "model"
    assert verdict.equivalent, verdict


@pytest.mark.parametrize(("a", "b", "min_cosine", "kind"), CHANGES)
def test_answer_changing_edits_are_rejected_despite_high_cosine(
    checker: EquivalenceChecker,
    equivalence_embedder: OnnxEmbedder,
    a: str,
    b: str,
    min_cosine: float,
    kind: str,
) -> None:
    verdict = _check(checker, equivalence_embedder, a, b, threshold=0.0)
    assert verdict.cosine > min_cosine  # a cache on cosine alone would serve it
    assert verdict == EquivalenceVerdict(False, 0.0, verdict.cosine, 0.0, f"hard_mismatch:{kind}")
    backward = _check(checker, equivalence_embedder, b, a, threshold=0.0)
    assert backward.reason == f"hard_mismatch:{kind}"


def test_identical_text_passes_whatever_the_threshold(
    checker: EquivalenceChecker, equivalence_embedder: OnnxEmbedder
) -> None:
    verdict = _check(
        checker, equivalence_embedder, "What is 17 × 23?", "  what is 17 ×  23? ", threshold=1.0
    )
    assert verdict.equivalent
    assert verdict.reason == "identical"


def test_score_is_symmetric_and_threshold_decides(
    checker: EquivalenceChecker, equivalence_embedder: OnnxEmbedder
) -> None:
    a, b = PARAPHRASES[0]
    forward = _check(checker, equivalence_embedder, a, b)
    backward = _check(checker, equivalence_embedder, b, a)
    assert forward.score == pytest.approx(backward.score, abs=1e-5)
    assert 0.0 < forward.score < 1.0
    assert forward.threshold == checker.default_threshold
    assert not _check(checker, equivalence_embedder, a, b, threshold=1.0).equivalent
    assert _check(checker, equivalence_embedder, a, b, threshold=0.0).equivalent


def test_unrelated_questions_are_not_equivalent(
    checker: EquivalenceChecker, equivalence_embedder: OnnxEmbedder
) -> None:
    verdict = _check(
        checker, equivalence_embedder, "How do I bake sourdough bread?", "What is a black hole?"
    )
    assert not verdict.equivalent
    assert verdict.score < 0.1


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan")])
def test_bad_threshold_is_refused(checker: EquivalenceChecker, threshold: float) -> None:
    vec = np.full(checker.dim, 1 / np.sqrt(checker.dim), dtype=np.float32)
    with pytest.raises(EquivalenceError, match="threshold"):
        checker.check("a", vec, "b", vec, threshold=threshold)


def test_bad_vector_is_refused(checker: EquivalenceChecker) -> None:
    vec = np.full(checker.dim, 1 / np.sqrt(checker.dim), dtype=np.float32)
    with pytest.raises(EquivalenceError, match="cand_vec"):
        checker.check("a", vec, "b", vec[:10])
    with pytest.raises(EquivalenceError, match="query_vec"):
        checker.check("a", np.zeros(checker.dim, np.float32), "b", vec)


def test_unreadable_artifact_is_refused() -> None:
    with pytest.raises(EquivalenceError, match="artifact"):
        EquivalenceChecker.load(b"not an npz file")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("seventeen", "17"),
        ("1,000", "1000"),
        ("3.50", "3.5"),
        ("3rd", "third"),
        ("twenty-three", "23"),
        ("2k", "2000"),
    ],
)
def test_numbers_are_normalised(a: str, b: str) -> None:
    assert signature(f"pay {a} dollars").numbers == signature(f"pay {b} dollars").numbers
    assert hard_mismatch(signature(f"pay {a} dollars"), signature(f"pay {b} dollars")) is None


def test_default_artifact_loads_without_shared_data(tmp_path: Path) -> None:
    # A fresh interpreter that fails on any attempt to open ../shared.
    code = (
        "import sys\n"
        "def guard(event, args):\n"
        "    if event == 'open' and 'shared/data' in str(args[0]):\n"
        "        raise RuntimeError(args[0])\n"
        "sys.addaudithook(guard)\n"
        "from cache.equivalence import EquivalenceChecker\n"
        "c = EquivalenceChecker.load_default()\n"
        "assert 0 < c.default_threshold < 1 and c.dim == 384\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, timeout=60)


def test_rephrased_numbers_go_to_the_scorer_but_arithmetic_never_does() -> None:
    # Near-identical texts: the number alone changed, vetoed.
    near = (
        signature("What is the price of iPhone 6?"),
        signature("What is the price of iPhone 7?"),
    )
    assert hard_mismatch(*near) == "number"
    # Rephrased: still flagged for the scorer's features, but it decides.
    a = signature("What is the price of the iPhone 6 in India?")
    b = signature("How much does an iPhone 7 cost these days in India?")
    assert mismatch_kind(a, b) == "number"
    assert hard_mismatch(a, b) is None
    # Another sum, however rephrased, is refused outright.
    a, b = signature("What is 17 × 23?"), signature("Could you please work out 17 × 24 for me?")
    assert hard_mismatch(a, b) == "number"


def test_forest_pads_a_leaf_reached_early() -> None:
    # One tree of depth 2: root splits x0 <= 0.5; left is a leaf (1.0), right
    # splits x1 <= 2.0 into leaves 2.0 and 3.0.
    inf = float("inf")
    forest = Forest(
        feature=np.array([[0, 0, 1]], dtype=np.int16),
        threshold=np.array([[0.5, inf, 2.0]]),
        leaf=np.array([[1.0, 1.0, 2.0, 3.0]]),
        depth=2,
    )
    assert forest.raw_score(np.array([0.5, 9.0])) == 1.0
    assert forest.raw_score(np.array([0.6, 2.0])) == 2.0
    assert forest.raw_score(np.array([0.6, 2.5])) == 3.0
    with pytest.raises(ValueError, match="depth"):
        Forest(forest.feature, forest.threshold, forest.leaf, depth=3)
