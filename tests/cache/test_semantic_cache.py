from __future__ import annotations

import asyncio
import dataclasses

import pytest

from cache import CacheError, CacheScope, CategoryPolicy, EntryNotFound, SemanticCache
from tests.cache.conftest import POLICY, SCOPE, Embed, NumbersMustMatch, entry, unit


async def test_repeat_is_an_exact_hit(cache: SemanticCache, embed: Embed) -> None:
    text = "What is the boiling point of water at sea level?"
    vec = embed(text)
    assert await cache.lookup(SCOPE, text, vec, "factual", POLICY) is None
    assert cache.submit(entry(text, vec, answer="100 °C"), POLICY)
    await cache.flush()
    hit = await cache.lookup(SCOPE, "  What is the boiling point of water at  sea level? ", vec,
                             "factual", POLICY)  # fmt: skip
    assert hit is not None and hit.exact and hit.similarity == 1.0
    assert hit.response["choices"][0]["message"]["content"] == "100 °C"
    assert (hit.backend, hit.tier, hit.prompt_tokens, hit.completion_tokens) == (
        "sim-large", "large", 5, 2)  # fmt: skip


async def test_paraphrase_is_a_semantic_hit(cache: SemanticCache, embed: Embed) -> None:
    cache.submit(
        entry("How do I reverse a list in Python?", embed("How do I reverse a list in Python?")),
        POLICY,
    )
    await cache.flush()
    q = "How can I reverse a Python list?"
    hit = await cache.lookup(SCOPE, q, embed(q), "factual", POLICY)
    assert hit is not None and not hit.exact and 0.85 <= hit.similarity < 1.0


async def test_other_tenant_alias_or_fingerprint_misses(cache: SemanticCache, embed: Embed) -> None:
    text = "Explain the CAP theorem"
    vec = embed(text)
    cache.submit(entry(text, vec), POLICY)
    await cache.flush()
    assert await cache.lookup(SCOPE, text, vec, "factual", POLICY) is not None
    for other in (
        dataclasses.replace(SCOPE, tenant="globex"),
        dataclasses.replace(SCOPE, model_alias="chat-large"),
        dataclasses.replace(SCOPE, fingerprint="fp-with-other-system-prompt"),
    ):
        assert await cache.lookup(other, text, vec, "factual", POLICY) is None


async def test_threshold_decides_semantic_candidates(cache: SemanticCache, embed: Embed) -> None:
    stored = "What is the capital of Australia?"
    cache.submit(entry(stored, embed(stored)), POLICY)
    await cache.flush()
    q = "Which city is Australia's capital?"
    vec = embed(q)
    loose = CategoryPolicy(similarity_threshold=0.6)
    strict = CategoryPolicy(similarity_threshold=0.99)
    assert await cache.lookup(SCOPE, q, vec, "factual", loose) is not None
    assert await cache.lookup(SCOPE, q, vec, "factual", strict) is None
    disabled = CategoryPolicy(enabled=False)
    assert await cache.lookup(SCOPE, stored, embed(stored), "factual", disabled) is None
    assert not cache.submit(entry(q, vec), disabled)


async def test_checker_rejects_a_different_number(sqlite_url: str, embed: Embed) -> None:
    c = await SemanticCache.open(sqlite_url, checker=NumbersMustMatch())
    try:
        c.submit(entry("What is 17 times 23?", embed("What is 17 times 23?"), category="math"),
                 POLICY)  # fmt: skip
        await c.flush()
        q = "What is 17 times 24?"
        vec = embed(q)
        policy = CategoryPolicy(similarity_threshold=0.8)
        assert await c.lookup(SCOPE, q, vec, "math", policy) is None
        ok = "What's 17 times 23?"
        assert await c.lookup(SCOPE, ok, embed(ok), "math", policy) is not None
    finally:
        await c.close()


async def test_best_accepted_candidate_wins(sqlite_url: str, embed: Embed) -> None:
    c = await SemanticCache.open(sqlite_url, checker=NumbersMustMatch())
    try:
        for text in ("Convert 5 miles to km", "Convert 6 miles to km", "Convert 5 miles into km"):
            c.submit(entry(text, embed(text), answer=text), POLICY)
        await c.flush()
        q = "Convert 5 miles to kilometres"
        hit = await c.lookup(
            SCOPE, q, embed(q), "factual", CategoryPolicy(similarity_threshold=0.7)
        )
        assert hit is not None and "5 miles" in hit.response["choices"][0]["message"]["content"]
    finally:
        await c.close()


async def test_wrong_dimension_is_refused(cache: SemanticCache) -> None:
    with pytest.raises(CacheError, match="dim 384"):
        await cache.lookup(SCOPE, "x", unit(1, dim=12), "factual", POLICY)


async def test_neighbours_same_tenant_large_tier(cache: SemanticCache, embed: Embed) -> None:
    other_tenant = CacheScope("globex", "chat", "fp0")
    other_fp = dataclasses.replace(SCOPE, fingerprint="another-conversation")
    rows = [
        ("Sort a dict by value in Python", SCOPE, "large"),
        ("Sort a Python dictionary by its values", other_fp, "large"),
        ("Sort a dictionary by value in python", SCOPE, "small"),
        ("Sort a dict by value, python", other_tenant, "large"),
    ]
    for text, scope, tier in rows:
        cache.submit(entry(text, embed(text), scope=scope, tier=tier, answer="sorted(...)"), POLICY)
    await cache.flush()
    got = await cache.neighbours("acme", embed("How to sort a dict by value?"), k=5, floor=0.5)
    assert [n.request_text for n in got] and {n.tier for n in got} == {"large"}
    assert {n.request_text for n in got} == {rows[0][0], rows[1][0]}  # across fingerprints
    assert all(n.answer_text == "sorted(...)" and n.utility == 0.5 for n in got)
    await cache.set_utility(got[0].entry_id, 0.9)
    again = await cache.neighbours("acme", embed("How to sort a dict by value?"), k=5, floor=0.5)
    assert {n.entry_id: n.utility for n in again}[got[0].entry_id] == 0.9
    assert await cache.neighbours("acme", embed("x"), k=5, floor=0.5, model_alias="nope") == []


async def test_bad_feedback_removes_the_entry(cache: SemanticCache, embed: Embed) -> None:
    text = "Who wrote Dune?"
    vec = embed(text)
    cache.submit(entry(text, vec), POLICY)
    await cache.flush()
    hit = await cache.lookup(SCOPE, text, vec, "factual", POLICY)
    assert hit is not None
    assert not await cache.record_feedback(hit.entry_id, 1.0)
    assert await cache.record_feedback(hit.entry_id, -1.0)
    assert await cache.lookup(SCOPE, text, vec, "factual", POLICY) is None
    assert await cache.neighbours("acme", vec, k=3, floor=0.1) == []
    with pytest.raises(EntryNotFound):
        await cache.record_feedback(hit.entry_id, -1.0)
    with pytest.raises(CacheError, match="rating"):
        await cache.record_feedback(hit.entry_id, 3)


async def test_admin_list_delete_flush_and_stats(cache: SemanticCache, embed: Embed) -> None:
    texts = {"code": ["Write a Rust hello world", "Write a Go hello world"],
             "math": ["Integrate x squared"]}  # fmt: skip
    for category, items in texts.items():
        for t in items:
            cache.submit(entry(t, embed(t), category=category), POLICY)
    await cache.flush()
    listed = await cache.list_entries(category="code")
    assert sorted(e.request_text for e in listed) == sorted(texts["code"])
    assert [e.request_text for e in await cache.list_entries(text_contains="Rust")] == [
        "Write a Rust hello world"]  # fmt: skip
    assert len(await cache.list_entries(limit=1, offset=1)) == 1
    vec = embed("Integrate x squared")
    await cache.lookup(SCOPE, "Integrate x squared", vec, "math", POLICY)
    await cache.lookup(SCOPE, "Unrelated question about birds", embed("birds"), "math", POLICY)
    stats = {(s.category, s.tenant): s for s in await cache.stats()}
    assert stats[("code", "acme")].entries == 2 and stats[("code", "acme")].bytes > 0
    assert (stats[("math", "acme")].hits, stats[("math", "acme")].misses) == (1, 1)

    assert await cache.flush_entries(category="code", dry_run=True) == 2
    assert len(await cache.list_entries(category="code")) == 2
    assert await cache.flush_entries(category="code", tenant="acme") == 2
    assert await cache.list_entries(category="code") == []
    t = texts["code"][0]
    assert await cache.lookup(SCOPE, t, embed(t), "code", POLICY) is None

    math_id = (await cache.list_entries(category="math"))[0].entry_id
    await cache.delete(math_id)
    assert await cache.lookup(SCOPE, "Integrate x squared", vec, "math", POLICY) is None
    with pytest.raises(EntryNotFound):
        await cache.delete(math_id)


async def test_full_queue_drops_and_counts(sqlite_url: str) -> None:
    c = await SemanticCache.open(sqlite_url, write_queue_size=2)
    try:
        results = [c.submit(entry(f"q{i}", unit(i)), POLICY) for i in range(5)]
        assert results == [True, True, False, False, False]
        await c.flush()
        counters = c.counters()
        assert (counters.submitted, counters.dropped_queue_full, counters.entries) == (2, 3, 2)
    finally:
        await c.close()


async def test_open_names_a_bad_argument(sqlite_url: str) -> None:
    with pytest.raises(CacheError, match="candidates must be > 0, got 0"):
        await SemanticCache.open(sqlite_url, candidates=0)


async def test_flush_removes_answers_still_in_the_write_queue(
    cache: SemanticCache, embed: Embed
) -> None:
    # A flush means every answer accepted before it is gone, including those the
    # write-behind queue has not written yet (a slow database holds them longer).
    await cache.bg.poll_lock.acquire()  # holds the writer before its insert
    try:
        for t in ("Write a Rust hello world", "Write a Go hello world"):
            assert cache.submit(entry(t, embed(t), category="code"), POLICY)
        await asyncio.sleep(0.05)  # the writer has taken its batch and waits
        flushing = asyncio.create_task(cache.flush_entries(category="code"))
        await asyncio.sleep(0.05)
    finally:
        cache.bg.poll_lock.release()
    assert await flushing == 2
    later = "Write a Zig hello world"  # submitted after the flush: kept
    cache.submit(entry(later, embed(later), category="code"), POLICY)
    await cache.flush()
    assert [e.request_text for e in await cache.list_entries(category="code")] == [later]
    t = "Write a Rust hello world"
    assert await cache.lookup(SCOPE, t, embed(t), "code", POLICY) is None


async def test_answer_asked_before_a_covering_flush_is_not_stored(
    cache: SemanticCache, embed: Embed
) -> None:
    def asked(text: str, category: str, at: int, tenant: str = "acme") -> bool:
        scope = dataclasses.replace(SCOPE, tenant=tenant)
        e = dataclasses.replace(entry(text, embed(text), category=category), scope=scope)
        return cache.submit(dataclasses.replace(e, asked_at_flush=at), POLICY)

    before = cache.flushes
    await cache.flush_entries(category="code")
    assert not asked("Write a Rust hello world", "code", before)  # covered
    assert asked("Integrate x squared", "math", before)  # another category
    assert asked("Write a Go hello world", "code", cache.flushes)  # asked after it
    before = cache.flushes
    await cache.flush_entries(tenant="globex")
    assert asked("Write a C hello world", "code", before)  # another tenant
    assert not asked("Write a C hello world", "code", before, tenant="globex")
    await cache.flush()
    stored = sorted(e.request_text for e in await cache.list_entries())
    assert stored == ["Integrate x squared", "Write a C hello world", "Write a Go hello world"]
    # Older than the marks kept: assumed covered.
    for _ in range(1100):
        await cache.flush_entries(tenant="nobody")
    assert not asked("Write a Zig hello world", "code", before)


async def test_a_flush_does_not_wait_long_for_a_stuck_writer(
    cache: SemanticCache, embed: Embed
) -> None:
    # A store that hangs holds the writer's batch: the flush waits a bounded time, and
    # the entries it covers are dropped by the writer, not inserted after it.
    cache.flush_drain_s = 0.2
    await cache.bg.poll_lock.acquire()
    try:
        asked = cache.flushes
        for t in ("Write a Rust hello world", "Write a Go hello world"):
            e = entry(t, embed(t), category="code")
            assert cache.submit(dataclasses.replace(e, asked_at_flush=asked), POLICY)
        await asyncio.sleep(0.05)  # the writer has taken its batch and waits
        assert await asyncio.wait_for(cache.flush_entries(category="code"), 3) == 0
    finally:
        cache.bg.poll_lock.release()
    await cache.flush()
    assert await cache.list_entries(category="code") == []
