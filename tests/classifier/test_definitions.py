from __future__ import annotations

import pytest

from classifier import (
    CategoryDef,
    DefinitionError,
    load_default_definitions,
    load_definitions,
    merge_definitions,
    validate_definitions,
)


def test_default_set_has_the_issue_categories_and_creative_seeds() -> None:
    defs = load_default_definitions()
    names = [d.name for d in defs]
    assert names == [
        "code", "math", "factual", "conversation", "creative", "time_sensitive", "general",
    ]  # fmt: skip
    creative = next(d for d in defs if d.name == "creative")
    assert 60 <= len(creative.examples) <= 100
    validate_definitions(defs, "general")


@pytest.mark.parametrize("name", ["", "  ", "Has Space", "UPPER", "x" * 80])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(DefinitionError, match="category name"):
        CategoryDef(name=name, description="d", examples=("e",))


def test_bad_regex_is_named() -> None:
    with pytest.raises(DefinitionError, match=r"legal.*\(unclosed"):
        CategoryDef(name="legal", examples=("e",), patterns=("(unclosed",))


def test_empty_example_is_refused() -> None:
    with pytest.raises(DefinitionError, match="examples holds an empty string"):
        CategoryDef(name="legal", examples=("fine", "  "))


def test_duplicate_names_and_unknown_fallback() -> None:
    a, b = CategoryDef("a", examples=("x",)), CategoryDef("b", examples=("y",))
    with pytest.raises(DefinitionError, match="duplicate category name"):
        validate_definitions([a, b, CategoryDef("a", examples=("z",))], "a")
    with pytest.raises(DefinitionError, match="fallback category 'general' is not defined"):
        validate_definitions([a, b], "general")


def test_config_yaml_unknown_field_is_refused() -> None:
    with pytest.raises(DefinitionError, match="unknown category field"):
        load_definitions("categories:\n- name: legal\n  exampels: [a]\n")
    with pytest.raises(DefinitionError, match="list under 'categories'"):
        load_definitions("categories: 3\n")


def test_merge_extends_a_default_unless_replaced() -> None:
    base = [CategoryDef("code", "code things", ("a",), ("python",)), CategoryDef("general")]
    extra = [CategoryDef("code", "", ("b",)), CategoryDef("legal", "law", ("c",))]
    merged = {d.name: d for d in merge_definitions(base, extra)}
    assert merged["code"].examples == ("a", "b")
    assert merged["code"].description == "code things"
    assert merged["code"].keywords == ("python",)
    assert "legal" in merged
    replaced = {d.name: d for d in merge_definitions(base, extra, replace=["code"])}
    assert replaced["code"].examples == ("b",)


def test_hints_match_words_phrases_and_patterns() -> None:
    d = CategoryDef("legal", examples=("x",), keywords=("tort", "small claims"),
                    patterns=(r"\bsue\b",))  # fmt: skip
    assert d.hint_hits("Can I sue my landlord in small claims court?") == 2
    assert d.hint_hits("A TORT is a civil wrong") == 1
    assert d.hint_hits("tortilla recipes") == 0
