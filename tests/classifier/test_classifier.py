from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from backends import OnnxEmbedder
from classifier import (
    CategoryDef,
    Classification,
    Classifier,
    DefinitionError,
    InputError,
    UnknownCategoryError,
)

Classify = Callable[..., Classification]

KNOWN = {
    "code": "How do I remove duplicates from a list in Python while keeping the order?",
    "math": "Solve for x: 5x - 7 = 18",
    "factual": "Who was the first president of the United States?",
    "conversation": "hi! how are you doing today?",
    "creative": "Write a poem about a lonely robot on Mars",
    "time_sensitive": "What's the weather in Madrid tomorrow?",
    "general": "set an alarm for 6:30 am",
}


@pytest.mark.parametrize(("category", "text"), sorted(KNOWN.items()))
def test_known_examples_land_in_their_categories(
    classify: Classify, category: str, text: str
) -> None:
    result = classify(text)
    assert result.category == category, result
    assert 0.0 <= result.confidence <= 1.0
    assert dict(result.scores)[result.candidate] == pytest.approx(result.confidence)


def test_signals_decide_what_embeddings_miss(classify: Classify) -> None:
    fenced = "Can you check this?\n```\nx = [1, 2, 3]\nprint(x[3])\n```"
    assert classify(fenced).category == "code"
    assert classify("what's the stock price today").category == "time_sensitive"
    assert classify("17*23").category == "math"


def test_long_math_word_problem_is_math(classify: Classify) -> None:
    story = (
        "Maria runs a small bakery. On Monday she baked 120 croissants and sold 85 of them at "
        "$2.50 each. On Tuesday she baked 20% more croissants than on Monday and sold all but "
        "14, this time at $2.75 each. Ingredients cost her $0.60 per croissant baked. "
    ) * 3 + "What was her total profit over the two days?"
    assert classify(story).category == "math"


def test_code_inside_a_long_instruction_is_code(classify: Classify) -> None:
    prompt = (
        "You are a senior reviewer at our company. Please review the change below for "
        "readability and correctness, and point out anything that could break in production.\n"
        "```go\nfunc Sum(xs []int) int {\n\ttotal := 0\n\tfor _, x := range xs {\n"
        "\t\ttotal += x\n\t}\n\treturn total\n}\n```"
    )
    assert classify(prompt).category == "code"


def test_low_confidence_falls_back_to_general(embedder: OnnxEmbedder) -> None:
    clf = Classifier.load_default(embed=embedder.embed_batch, min_confidence=0.999)
    text = "the thing about that stuff"
    result = clf.classify(embedder.embed_batch([text])[0], text)
    assert result.category == "general"
    assert result.source == "fallback"
    assert result.confidence < 0.999


def test_follow_up_uses_earlier_turns(classify: Classify) -> None:
    result = classify("and in Rust?", context=("How do I read a CSV file in Python?",))
    assert result.category == "code"
    assert classify(
        "make it shorter", context=("Write a short story about a dragon",)
    ).category == ("creative")
    # A self-contained closing turn keeps its own category.
    assert classify("thanks!", context=("How do I sort a dict in Python?",)).category == (
        "conversation"
    )


def test_a_new_category_catches_matching_queries_at_once(embedder: OnnxEmbedder) -> None:
    clf = Classifier.load_default(embed=embedder.embed_batch)
    legal = CategoryDef(
        name="legal",
        description="Questions about law, contracts, lawsuits and legal rights",
        examples=(
            "Can my landlord evict me without notice?",
            "Is a verbal contract legally binding?",
            "How do I sue someone in small claims court?",
            "What are my rights if I get fired without cause?",
            "Do I need a lawyer to write a will?",
            "Can I break my lease early without penalty?",
        ),
    )
    evaluation = clf.add_category(legal)
    assert evaluation.kind == "training"
    assert "legal" in [d.name for d in clf.categories]
    text = "My employer hasn't paid my overtime, can I take them to court?"
    assert clf.classify(embedder.embed_batch([text])[0], text).category == "legal"
    code = KNOWN["code"]
    assert clf.classify(embedder.embed_batch([code])[0], code).category == "code"

    clf.add_examples("legal", ["What does 'force majeure' mean in a contract?"])
    assert "What does 'force majeure' mean in a contract?" in clf.categories[-1].examples
    clf.remove_category("legal")
    assert "legal" not in [d.name for d in clf.categories]


def test_changes_are_validated(default_classifier: Classifier) -> None:
    with pytest.raises(UnknownCategoryError):
        default_classifier.add_examples("nope", ["x"])
    with pytest.raises(DefinitionError, match="already exists"):
        default_classifier.add_category(CategoryDef("code", examples=("x",)))
    with pytest.raises(DefinitionError, match="needs examples"):
        default_classifier.add_category(CategoryDef("legal"))
    with pytest.raises(DefinitionError, match="fallback"):
        default_classifier.remove_category("general")
    with pytest.raises(InputError, match="shape"):
        default_classifier.classify(np.zeros(10, dtype=np.float32), "x")


def test_train_from_definitions_without_the_corpus(embedder: OnnxEmbedder) -> None:
    defs = [
        CategoryDef("weather", examples=("will it rain today", "forecast for tomorrow",
                                         "is it sunny in Rome", "how cold is it outside")),
        CategoryDef("food", examples=("a recipe for pancakes", "how long to boil an egg",
                                      "what goes well with salmon", "vegan lasagna ideas")),
        CategoryDef("general", examples=("set a timer", "call mom", "turn off the lights",
                                         "play some jazz")),
    ]  # fmt: skip
    clf = Classifier.train(defs, embed=embedder.embed_batch, default_corpus=False,
                           min_confidence=0.0, validate=False)  # fmt: skip
    text = "what should I cook for dinner with chickpeas"
    assert clf.classify(embedder.embed_batch([text])[0], text).category == "food"
    assert clf.last_evaluation is not None and clf.last_evaluation.accuracy == 1.0


def test_committed_head_reports_its_held_out_evaluation(default_classifier: Classifier) -> None:
    ev = default_classifier.last_evaluation
    assert ev is not None and ev.kind == "holdout"
    assert ev.macro_f1 > 0.9


def test_config_category_replacing_a_default(embedder: OnnxEmbedder) -> None:
    mine = CategoryDef(
        "creative",
        "Marketing copy only",
        examples=("write ad copy for running shoes", "a tagline for our new bank account",
                  "product description for a smart kettle", "a catchy banner text for a sale"),
    )  # fmt: skip
    clf = Classifier.load_default(embed=embedder.embed_batch, extra=[mine], replace=["creative"])
    creative = next(d for d in clf.categories if d.name == "creative")
    assert creative.examples == mine.examples
    with pytest.raises(DefinitionError, match="no config definition"):
        Classifier.load_default(embed=embedder.embed_batch, replace=["code"])


def test_embed_of_the_wrong_width_is_refused() -> None:
    def embed(texts: object) -> np.ndarray:
        return np.zeros((1, 10), dtype=np.float32)

    clf = Classifier.load_default(embed=embed)
    with pytest.raises(InputError, match="expected width 384"):
        clf.add_examples("code", ["how do I profile a Go program?"])
