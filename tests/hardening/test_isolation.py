"""Adversarial isolation: two tenants asking the same and paraphrased questions under
different system prompts and histories; no hit may ever cross tenant or context.

Every hit names its entry (``x-cachegate-entry``); after the run each hit is checked
against the stored entry: same tenant, same model alias, and the fingerprint of the
request's own context (computed here with the proxy's normaliser and the policy in
force), and its answer is the simulator's answer to the stored question. A hit served
from a request still in flight (``x-cachegate-coalesced``) names that request instead,
which must be a miss of the same tenant and context.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import openai

from backends.embedding import Embedder
from backends.sim import digest
from cache import EntryInfo
from proxy.normalise import normalise_chat
from proxy.services import Services
from tests.hardening.conftest import KEY_A, KEY_B, start

QUESTIONS = [
    ("What is the capital of Australia?", "Which city is Australia's capital?"),
    ("How do I reverse a list in Python?", "How can I reverse a Python list?"),
    ("What is the boiling point of water?", "At what temperature does water boil?"),
    ("Who wrote Pride and Prejudice?", "Who is the author of Pride and Prejudice?"),
    ("How many legs does a spider have?", "How many legs do spiders have?"),
    ("What is the speed of light?", "How fast does light travel?"),
    ("Explain recursion briefly.", "Briefly explain what recursion is."),
    ("What is 12 times 12?", "What is 12 multiplied by 12?"),
]
SYSTEMS = [None, "Answer in French.", "You are a pirate. Stay in character."]
HISTORIES = [
    [],
    [
        {"role": "user", "content": "Hi, I am planning a trip."},
        {"role": "assistant", "content": "Great, where to?"},
    ],
]
REQUESTS = 2000
CONCURRENCY = 32


def _messages(rng: random.Random) -> list[dict[str, Any]]:
    system, history = rng.choice(SYSTEMS), rng.choice(HISTORIES)
    question = rng.choice(rng.choice(QUESTIONS))
    head = [{"role": "system", "content": system}] if system else []
    return [*head, *history, {"role": "user", "content": question}]


def test_no_cross_tenant_or_cross_context_hits(embedder: Embedder, tmp_path: Path) -> None:
    stack = start(embedder, tmp_path / "iso.db")
    rng = random.Random(7)
    plan = [(rng.choice(("a", "b")), _messages(rng)) for _ in range(REQUESTS)]
    keys = {"a": KEY_A, "b": KEY_B}

    async def run() -> list[tuple[str, list[dict[str, Any]], dict[str, str], str]]:
        clients = {
            t: openai.AsyncOpenAI(base_url=stack.url + "/v1", api_key=k, max_retries=0)
            for t, k in keys.items()
        }
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(tenant: str, messages: list[dict[str, Any]]) -> Any:
            async with gate:
                raw = await clients[tenant].chat.completions.with_raw_response.create(
                    model="auto",
                    messages=messages,  # type: ignore[arg-type]  # plain dicts, as users send
                )
                answer = raw.parse().choices[0].message.content or ""
                return tenant, messages, dict(raw.headers), answer

        try:
            return list(await asyncio.gather(*(one(t, m) for t, m in plan)))
        finally:
            for c in clients.values():
                await c.close()

    try:
        results = asyncio.run(run())
        stack.flush_writes()

        async def stored(s: Services) -> dict[int, EntryInfo]:
            assert s.cache is not None
            out: dict[int, EntryInfo] = {}
            while page := await s.cache.list_entries(offset=len(out), limit=1000):
                out.update({e.entry_id: e for e in page})
            return out

        entries = stack.call(stored)

        async def sampling(s: Services) -> dict[str, tuple[str, ...]]:
            names = {h["x-cachegate-category"] for _, _, h, _ in results}
            return {n: s.effective_policy(n).sampling_params for n in names}

        params = stack.call(sampling)
        by_id = {h["x-request-id"]: (t, m, h) for t, m, h, _ in results}
        hits = coalesced = 0
        for tenant, messages, headers, answer in results:
            if headers["x-cachegate-cache"] != "hit":
                continue
            hits += 1
            body = {"model": "auto", "messages": messages}
            expected = normalise_chat(body, params[headers["x-cachegate-category"]])
            leader_id = headers.get("x-cachegate-coalesced")
            if leader_id is not None:  # the answer of a request still in flight
                coalesced += 1
                leader_tenant, leader_messages, leader_headers = by_id[leader_id]
                assert leader_headers["x-cachegate-cache"] == "miss"
                assert leader_tenant == tenant
                leader_params = params[leader_headers["x-cachegate-category"]]
                leader_body = {"model": "auto", "messages": leader_messages}
                leader_fp = normalise_chat(leader_body, leader_params).fingerprint
                assert leader_fp == expected.fingerprint, (messages, leader_messages)
                continue
            entry = entries[int(headers["x-cachegate-entry"])]
            assert entry.tenant == tenant
            assert entry.model_alias == "auto"
            assert entry.fingerprint == expected.fingerprint, (messages, entry)
            assert digest(entry.request_text) in answer
        assert hits > REQUESTS // 4  # the same contexts did hit each other
        assert coalesced > 0  # at concurrency 32, some repeats met their question in flight
        assert {e.tenant for e in entries.values()} == {"a", "b"}
    finally:
        stack.stop()
