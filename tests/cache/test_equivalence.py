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
from cache.equivalence_text import (
    IDF_BITS,
    Lexicon,
    hard_mismatch,
    idf_bucket,
    mismatch_kind,
    signature,
    swapped_name,
    swapped_opposite,
    swapped_order,
    swapped_question,
)
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


# Near-identical lower-cased queries that swap one thing for another: case does not mark
# the name, so the shipped word tables (capitalised share and rarity in non-Quora text)
# have to. Each must be refused however low the threshold.
LOWER_CASE_SWAPS = [
    ("what's the weather in paris today", "what's the weather in london today"),
    ("translate good morning to spanish", "translate good morning to german"),
    ("show me the stock price for google", "show me the stock price for microsoft"),
    ("what time is it in tokyo", "what time is it in toronto"),
    ("how do i learn java", "how do i learn python"),
    ("who is the ceo of amazon", "who is the ceo of samsung"),
    # Places the reference corpus seldom capitalises ("nigeria", "iceland"): the bundled
    # place names (cache.places) mark them.
    ("cheap flights to nigeria", "cheap flights to niger"),
    ("what is the weather in ireland", "what is the weather in iceland"),
    ("good places to stay in delhi", "good places to stay in bangalore"),
]
# Lower-cased rewordings the same rule must leave to the scorer: a common word swapped,
# an inflection, a spelling variant, a word order change, an alias.
LOWER_CASE_KEPT = [
    ("tell me a good joke", "tell me a funny joke"),
    ("cheap flights to paris", "cheap flight to paris"),
    ("how do i learn python quickly", "how do i learn python fast"),
    ("whats my delta flight's status", "whats the status of my delta flight"),
    ("what is the colour of the sky", "what is the color of the sky"),
    ("how big is the usa", "how big is america"),
    ("nigeria visa requirements", "nigerian visa requirements"),
    # A country and its demonym, where the demonym is not formed from the name.
    ("france food culture", "french food culture"),
    ("best german beer brands", "best germany beer brands"),
    ("What is French cuisine known for?", "What is France's cuisine known for?"),
]


@pytest.mark.parametrize(("a", "b"), LOWER_CASE_SWAPS)
def test_lower_cased_name_swaps_are_rejected(
    checker: EquivalenceChecker, equivalence_embedder: OnnxEmbedder, a: str, b: str
) -> None:
    for first, second in ((a, b), (b, a)):
        verdict = _check(checker, equivalence_embedder, first, second, threshold=0.0)
        assert verdict.reason == "hard_mismatch:entity", verdict
        assert not verdict.equivalent and verdict.score == 0.0


@pytest.mark.parametrize(("a", "b"), LOWER_CASE_KEPT)
def test_lower_cased_rewordings_go_to_the_scorer(
    checker: EquivalenceChecker, equivalence_embedder: OnnxEmbedder, a: str, b: str
) -> None:
    verdict = _check(checker, equivalence_embedder, a, b, threshold=0.0)
    assert verdict.reason == "model", verdict
    assert verdict.equivalent


def _lexicon(names: set[str], rare: set[str]) -> Lexicon:
    rows = 1 << IDF_BITS
    idf, proper = np.zeros(rows, np.float32), np.zeros(rows, np.float32)
    for word in names:
        proper[idf_bucket(word)] = 0.9
    for word in rare:
        idf[idf_bucket(word)] = 9.0
    return Lexicon(idf, proper, rare_idf=8.0)


def test_swapped_name_needs_one_name_like_word_on_each_side() -> None:
    lexicon = _lexicon({"paris", "london"}, {"zanzibar"})
    swap = (signature("weather in paris"), signature("weather in london"))
    assert swapped_name(*swap, lexicon) == ("paris", "london")
    assert hard_mismatch(*swap, lexicon) == "entity"
    assert hard_mismatch(*swap) is None  # without word tables only case marks a name
    # A rare word counts as a name; a common word on either side does not.
    rare = (signature("weather in paris"), signature("weather in zanzibar"))
    assert hard_mismatch(*rare, lexicon) == "entity"
    common = (signature("weather in paris"), signature("weather in winter"))
    assert hard_mismatch(*common, lexicon) is None
    # Two words swapped for one, or a name added, is a rewording for the scorer to judge.
    added = (signature("weather in paris"), signature("weather in paris and london"))
    assert hard_mismatch(*added, lexicon) is None
    # Not near-identical: left to the scorer.
    long = (
        signature("weather in paris"),
        signature("should i take an umbrella for my walk around london this afternoon"),
    )
    assert hard_mismatch(*long, lexicon) is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("flights to paris", "flight to paris"),  # inflection
        ("hotels in londen", "hotels in london"),  # typo
        ("news from the usa", "news from america"),  # alias
        ("weather in paris", "weather in paris please"),  # one side only
    ],
)
def test_swapped_name_ignores_variants(a: str, b: str) -> None:
    # A misspelling is rare in the reference corpus; the names it is close to are not.
    lexicon = _lexicon({"paris", "london", "usa", "america", "please"}, {"londen"})
    assert hard_mismatch(signature(a), signature(b), lexicon) is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("flights to niger", "flights to nigeria"),  # one inside the other
        ("weather in austria", "weather in australia"),  # same beginning
        ("what is the capital of iceland", "what is the capital of ireland"),  # one letter
        ("how do i learn java", "how do i learn javascript"),
    ],
)
def test_close_names_are_not_variants(a: str, b: str) -> None:
    names = {"niger", "nigeria", "austria", "australia", "iceland", "ireland", "java"}
    lexicon = _lexicon(names | {"javascript"}, set())
    assert hard_mismatch(signature(a), signature(b), lexicon) == "entity"


def test_known_places_are_names_without_word_tables() -> None:
    blank = _lexicon(set(), set())  # no word written like a name, none rare
    for a, b in [
        ("flights to niger", "flights to nigeria"),
        ("what is the capital of iceland", "what is the capital of ireland"),
        ("jobs in pune", "jobs in bangalore"),
    ]:
        assert hard_mismatch(signature(a), signature(b), blank) == "entity", (a, b)
    # Forms of one place are still one place.
    for a, b in [
        ("ukraine news today", "ukrainian news today"),
        ("nigeria visa rules", "nigerian visa rules"),
    ]:
        assert hard_mismatch(signature(a), signature(b), blank) is None, (a, b)


# Every threshold the system can hand the checker: the shipped default, the floor an
# adaptive relaxation can reach (never below 0), and 0 itself.
@pytest.mark.parametrize("threshold", [None, 0.0, 1e-12, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize(
    ("a", "b"),
    [(a, b) for a, b, _, _ in CHANGES] + LOWER_CASE_SWAPS[:2],
)
def test_vetoed_pairs_pass_no_threshold(
    checker: EquivalenceChecker,
    equivalence_embedder: OnnxEmbedder,
    a: str,
    b: str,
    threshold: float | None,
) -> None:
    kw = {} if threshold is None else {"threshold": threshold}
    verdict = _check(checker, equivalence_embedder, a, b, **kw)
    assert verdict.reason.startswith("hard_mismatch:")
    assert not verdict.equivalent
    assert verdict.score == 0.0  # below every threshold but 0, and 0 is refused by reason


# Spelling differences that say the same thing: the vetoes must not read them as another
# number, a negation or another name (each of these was a vetoed duplicate in QQP dev).
SAME_THING = [
    ("How can I lose 5 kg in one month?", "How can I lose 5 kg in 1 month?"),
    ("Who won the first game of the series?", "Who won the 1st game of the series?"),
    ("How much does a 128gb iPhone cost?", "How much does a 128 GB iPhone cost?"),
    ("Please answer all 3 cases", "Please answer all 3cases"),
    ("Who will win the Champions League 2016/17?", "Who will win the Champions League 2016-2017?"),
    (
        "Who will win the Champions League 2016-17?",
        "Who will win the Champions League 2016 to 2017?",
    ),
    ("5. Is it true that the ban stopped the riots?", "Is it true that the ban stopped the riots?"),
    ("Why cant we produce oxygen like trees?", "Why can't we produce oxygen like trees?"),
    ("Why doesnt anyone answer my questions?", "Why won't anyone answer my questions?"),
    (
        "Is an M.D a sufficient degree to treat patients?",
        "Is an MD a sufficient degree to treat patients?",
    ),
    ("Which Ph.D specializations suit me?", "Which PhD specializations suit me?"),
    ("Why would the U.S. not invade Canada?", "Why would the USA not invade Canada?"),
    ("What is the best time to visit Shilong?", "What is the best time to visit Shillong?"),
    ("Why do we not pray to Lord Brahma?", "Why do we not pray to Lord Bramha?"),
]
# ... while the same spellings still change the answer when the thing itself differs.
STILL_DIFFERENT = [
    ("How can I lose 5 kg in one month?", "How can I lose 5 kg in 2 months?", "number"),
    ("Who won the 3rd game of the series?", "Who won the 1st game of the series?", "number"),
    ("How much does a 128gb iPhone cost?", "How much does a 64 GB iPhone cost?", "number"),
    ("Who won the Champions League 2016/17?", "Who won the Champions League 2017/18?", "number"),
    ("Why cant we produce oxygen like trees?", "Why can we produce oxygen like trees?", "negation"),
    ("Why doesnt the sun rise in the west?", "Why does the sun rise in the west?", "negation"),
    ("What is the best time to visit Iran?", "What is the best time to visit Iraq?", "entity"),
    (
        "What is the best time to visit Austria?",
        "What is the best time to visit Australia?",
        "entity",
    ),
    (
        "What is the best time to visit Colombia?",
        "What is the best time to visit Columbia?",
        "entity",
    ),
]


@pytest.mark.parametrize(("a", "b"), SAME_THING)
def test_spelling_variants_are_not_vetoed(a: str, b: str) -> None:
    for first, second in ((a, b), (b, a)):
        assert hard_mismatch(signature(first), signature(second)) is None, (first, second)


@pytest.mark.parametrize(("a", "b", "kind"), STILL_DIFFERENT)
def test_spelling_rules_keep_real_differences(a: str, b: str, kind: str) -> None:
    for first, second in ((a, b), (b, a)):
        assert hard_mismatch(signature(first), signature(second)) == kind, (first, second)


# Near-identical texts that ask the opposite, or the same words in the reverse
# direction: each was accepted at the default threshold (cosine 0.95-0.998) before.
REVERSED = [
    ("sort a list in ascending order python", "sort a list in descending order python", "opposite"),
    (
        "What is the time complexity of quicksort in the worst case?",
        "What is the time complexity of quicksort in the best case?",
        "opposite",
    ),
    ("How to increase blood pressure", "How to decrease blood pressure", "opposite"),
    ("What is the capital of South Korea?", "What is the capital of North Korea?", "opposite"),
    # One of a closed set of alternatives for another: a day, a part of a whole.
    (
        "Is it going to rain today in Seattle?",
        "Is it going to rain tomorrow in Seattle?",
        "opposite",
    ),
    ("What year did World War 2 start?", "What year did World War 2 end?", "opposite"),
    # Relative time (each of these was accepted at the default threshold: 0.88-0.96).
    (
        "What's the weather in Paris this week?",
        "What's the weather in Paris next week?",
        "opposite",
    ),
    ("Who won the election last year?", "Who won the election this year?", "opposite"),
    ("How do I center a div horizontally?", "How do I center a div vertically?", "opposite"),
    # The other verb of a pair, an undoing prefix, a reversing particle after one verb.
    ("how to send an email with python", "how to receive an email with python", "opposite"),
    ("serialize object to json in C#", "deserialize json to object in C#", "opposite"),
    ("how to zip a folder in linux", "how to unzip a folder in linux", "opposite"),
    ("how to sign in to outlook", "how to sign out of outlook", "opposite"),
    ("how to turn on bluetooth", "how to turn off bluetooth", "opposite"),
    (
        "What is the cheapest flight to Paris?",
        "What is the most expensive flight to Paris?",
        "opposite",
    ),
    ("git reset --hard", "git reset --soft", "opposite"),
    (
        "how to check if a key exists in a dictionary",
        "how to check if a value exists in a dictionary",
        "opposite",
    ),
    # Another kind of answer asked for (a person, a time, a place, a cause).
    ("Who wrote Hamlet?", "When was Hamlet written?", "question"),
    ("When did the Titanic sink?", "Why did the Titanic sink?", "question"),
    # Kitchen measures the other way round.
    ("How many teaspoons in a tablespoon?", "How many tablespoons in a teaspoon?", "unit"),
    ("Flights from New York to London", "Flights from London to New York", "order"),
    ("Translate hello from English to French", "Translate hello from French to English", "order"),
    ("Is it better to rent than to buy?", "Is it better to buy than to rent?", "order"),
]
# Reorderings and rewordings that keep the question: neither rule may fire.
NOT_REVERSED = [
    ("Is a tomato a fruit or a vegetable?", "Is a tomato a vegetable or a fruit?"),
    ("What is the difference between TCP and UDP?", "What is the difference between UDP and TCP?"),
    (
        "How to convert a string to an int in Python",
        "In Python, how to convert a string to an int",
    ),
    (
        "What are the pros and cons of nuclear power?",
        "What are the advantages and disadvantages of nuclear power?",
    ),
    ("How can I lose weight fast?", "What is the fastest way to lose weight?"),
    ("git merge vs rebase", "git rebase vs merge"),
    # The two sides of an "or" traded next to a direction word: still one question.
    ("Is it better to lease or buy a car?", "Is it better to buy or lease a car?"),
    # Question words that open with the other one too, or "when" as a conjunction.
    (
        "Why was January first chosen to be the first day of the year?",
        "When and why was the 1st of January declared as the first day of the year?",
    ),
    ("What does it mean when your period is late?", "Why is my period late?"),
    # "in" and "out" after different verbs are no swap (a QQP duplicate).
    (
        "Who would win in a war between China and Russia?",
        "How would a war between Russia and China play out? Who would win?",
    ),
]


@pytest.mark.parametrize(("a", "b", "kind"), REVERSED)
def test_opposites_and_reversed_directions_are_rejected(
    checker: EquivalenceChecker, equivalence_embedder: OnnxEmbedder, a: str, b: str, kind: str
) -> None:
    for first, second in ((a, b), (b, a)):
        assert hard_mismatch(signature(first), signature(second)) == kind, (first, second)
        verdict = _check(checker, equivalence_embedder, first, second, threshold=0.0)
        assert verdict.reason == f"hard_mismatch:{kind}" and not verdict.equivalent


@pytest.mark.parametrize(("a", "b"), NOT_REVERSED)
def test_reorderings_that_keep_the_question_are_not_vetoed(a: str, b: str) -> None:
    for first, second in ((a, b), (b, a)):
        sa, sb = signature(first), signature(second)
        assert swapped_opposite(sa, sb) is None and not swapped_order(sa, sb), (first, second)
        assert not swapped_question(sa, sb), (first, second)
        assert hard_mismatch(sa, sb) is None, (first, second)
