"""Lookups through the shipped equivalence checker (cache.equivalence, another module's)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cache import CategoryPolicy, SemanticCache
from cache.equivalence import EquivalenceChecker
from tests.cache.conftest import SCOPE, Embed, entry

# A loose cosine floor on purpose: the checker, not the threshold, must reject these.
LOOSE = CategoryPolicy(similarity_threshold=0.75)


@pytest.fixture
async def checked(sqlite_url: str) -> AsyncIterator[SemanticCache]:
    c = await SemanticCache.open(sqlite_url, checker=EquivalenceChecker.load_default())
    try:
        yield c
    finally:
        await c.close()


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("What is 17 times 23?", "What is 17 times 24?"),
        ("Is coffee bad for your health?", "Is coffee not bad for your health?"),
        ("How do I convert 10 km to miles?", "How do I convert 10 miles to km?"),
    ],
)
async def test_answer_changing_edit_is_a_miss(
    checked: SemanticCache, embed: Embed, stored: str, asked: str
) -> None:
    checked.submit(entry(stored, embed(stored)), LOOSE)
    await checked.flush()
    assert await checked.lookup(SCOPE, stored, embed(stored), "factual", LOOSE) is not None
    assert await checked.lookup(SCOPE, asked, embed(asked), "factual", LOOSE) is None


async def test_paraphrase_passes_the_checker(checked: SemanticCache, embed: Embed) -> None:
    stored = "How do I reverse a list in Python?"
    checked.submit(entry(stored, embed(stored)), LOOSE)
    await checked.flush()
    asked = "How can I reverse a list in Python?"
    hit = await checked.lookup(SCOPE, asked, embed(asked), "factual", LOOSE)
    assert hit is not None and not hit.exact
