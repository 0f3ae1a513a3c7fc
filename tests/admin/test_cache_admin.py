"""/admin/cache: stats, entries, delete and flush against a real cache on SQLite."""

from __future__ import annotations

from pathlib import Path

import httpx

from backends.embedding import Embedder
from tests.admin.conftest import admin, ask, error_of, oai, start
from tests.stack import Stack

QUESTIONS = [
    "How do I reverse a list in Python?",
    "What is the capital of Australia?",
    "How do I sort a dictionary by value in Python?",
]


def test_stats_entries_delete_and_flush(stack: Stack) -> None:
    with admin(stack, actor="ops") as a:
        other = a.post("/keys", json={"tenant": "b", "name": "second tenant"}).json()["key"]
        with oai(stack) as c, oai(stack, other) as b:
            for q in QUESTIONS:
                ask(c, q)
            ask(b, QUESTIONS[0])
            stack.flush_writes()
            assert ask(c, QUESTIONS[0]).headers["x-cachegate-cache"] == "hit"

        stats = a.get("/cache/stats").json()
        assert stats["store_available"] is True
        assert stats["total"]["entries"] == 4
        code_a = next(r for r in stats["data"] if r["category"] == "code" and r["tenant"] == "a")
        assert code_a["entries"] == 2 and code_a["bytes"] > 0
        assert code_a["hits"] == 1 and code_a["misses"] == 2
        assert code_a["hit_rate"] == 1 / 3

        everything = a.get("/cache/entries").json()["data"]
        assert len(everything) == 4
        assert everything[0]["id"] > everything[-1]["id"]  # newest first
        only_b = a.get("/cache/entries", params={"tenant": "b"}).json()["data"]
        assert [e["request_text"] for e in only_b] == [QUESTIONS[0]]
        found = a.get("/cache/entries", params={"q": "dictionary"}).json()["data"]
        assert [e["request_text"] for e in found] == [QUESTIONS[2]]
        code = a.get("/cache/entries", params={"category": "code", "tenant": "a"}).json()
        assert len(code["data"]) == 2
        paged = a.get("/cache/entries", params={"offset": 1, "limit": 2}).json()["data"]
        assert [e["id"] for e in paged] == [e["id"] for e in everything[1:3]]
        assert a.get("/cache/entries", params={"limit": 0}).status_code == 422

        victim = found[0]["id"]
        assert a.delete(f"/cache/entries/{victim}").status_code == 200
        gone = a.delete(f"/cache/entries/{victim}")
        assert gone.status_code == 404 and error_of(gone)["code"] == "not_found"
        with oai(stack) as c:
            assert ask(c, QUESTIONS[2]).headers["x-cachegate-cache"] == "miss"
        stack.flush_writes()  # the miss stored it again

        refused = a.post("/cache/flush", json={})
        assert refused.status_code == 400 and error_of(refused)["param"] == "all"
        dry = a.post("/cache/flush", json={"tenant": "a", "category": "code", "dry_run": True})
        assert dry.json() == {
            "object": "cache.flush", "count": 2, "dry_run": True, "category": "code", "tenant": "a",
        }  # fmt: skip
        assert len(a.get("/cache/entries", params={"tenant": "a"}).json()["data"]) == 3
        done = a.post("/cache/flush", json={"tenant": "a"}).json()
        assert done["count"] == 3 and done["dry_run"] is False
        assert a.get("/cache/entries", params={"tenant": "a"}).json()["data"] == []
        assert len(a.get("/cache/entries").json()["data"]) == 1  # tenant b's entry stays

        audit = a.get("/audit", params={"kind": "cache"}).json()["data"]
        assert [(e["action"], e["actor"]) for e in audit] == [
            ("flush", "admin:ops"), ("delete", "admin:ops"),
        ]  # fmt: skip
        assert audit[0]["new"] == {"deleted": 3, "category": None, "tenant": "a"}


def test_cache_absent_is_503(embedder: Embedder, tmp_path: Path) -> None:
    def no_cache(cfg: dict[str, object]) -> None:
        cfg["cache"] = {"enabled": False}

    s = start(embedder, f"sqlite+aiosqlite:///{tmp_path / 'c.db'}", no_cache)
    try:
        with admin(s) as a:
            for r in (
                a.get("/cache/stats"),
                a.get("/cache/entries"),
                a.delete("/cache/entries/1"),
                a.post("/cache/flush", json={"all": True, "dry_run": True}),
            ):
                assert r.status_code == 503, r.text
                assert error_of(r)["code"] == "cache_unavailable"
                assert "cache is disabled" in error_of(r)["message"]
    finally:
        s.stop()


def _chat(text: str, **extra: object) -> dict[str, object]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}


def test_seeded_answer_is_served_to_the_question_and_its_paraphrases(stack: Stack) -> None:
    faq = "Settings > Security > Reset password; the link is valid for an hour."
    with admin(stack, actor="ops") as a, oai(stack) as c:
        made = a.post(
            "/cache/entries",
            json={"tenant": "a", "request": _chat("How do I reset my account password?"),
                  "answer": faq},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        seeded = made.json()
        assert seeded["request_text"] == "How do I reset my account password?"
        assert seeded["replaced"] is None
        # Asked as seeded (exact tier), reworded (semantic tier), and streamed.
        for text in (
            "How do I reset my account password?",
            "How can I reset the password of my account?",
        ):
            r = ask(c, text)
            assert r.headers["x-cachegate-cache"] == "hit", (text, dict(r.headers))
            assert r.headers["x-cachegate-entry"] == str(seeded["id"])
            assert r.parse().choices[0].message.content == faq
        stream = c.chat.completions.create(
            stream=True, model="auto",
            messages=[{"role": "user", "content": "How do I reset my account password?"}],
        )  # fmt: skip
        assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == faq
        listed = a.get("/cache/entries", params={"tenant": "a"}).json()["data"]
        assert [(e["id"], e["backend"], e["tier"]) for e in listed] == [
            (seeded["id"], "operator", "large")
        ]
        # Seeding the same question again replaces the answer (a correction).
        fixed = a.post(
            "/cache/entries",
            json={"tenant": "a", "request": _chat("How do I reset my account password?"),
                  "answer": "Use the sign-in page's Forgot password link.", "category": seeded["category"]},
        ).json()  # fmt: skip
        assert fixed["replaced"] == seeded["id"]
        again = ask(c, "How do I reset my account password?").parse()
        assert again.choices[0].message.content == "Use the sign-in page's Forgot password link."
        assert len(a.get("/cache/entries", params={"tenant": "a"}).json()["data"]) == 1
        audit = a.get("/audit").json()["data"]
        assert [r["action"] for r in audit if r["kind"] == "cache"] == ["seed", "seed"]
        # Another tenant, another system prompt: not this answer.
        other = c.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "system", "content": "Answer in French."},
                                    {"role": "user", "content": "How do I reset my account password?"}],
        )  # fmt: skip
        assert other.headers["x-cachegate-cache"] == "miss"


def test_seeding_refuses_what_would_not_be_cached(stack: Stack) -> None:
    def seed(**body: object) -> httpx.Response:
        with admin(stack) as a:
            return a.post("/cache/entries", json={"tenant": "a", "answer": "x", **body})

    cases = [
        ({"request": _chat("hi", model="gpt-17")}, 404, "model"),
        ({"request": {"model": "auto"}}, 400, "request"),
        ({"request": _chat("hi", n=2)}, 400, "request"),
        ({"request": _chat("hi"), "category": "no-such-category"}, 400, "category"),
        ({"request": {"model": "auto", "messages": [{"role": "assistant", "content": "x"}]}},
         400, "request"),
        ({"request": _chat("hi"), "answer": ""}, 422, None),
        ({"request": _chat("hi"), "extra": 1}, 422, None),
    ]  # fmt: skip
    for body, status, param in cases:
        r = seed(**body)
        assert r.status_code == status, (body, r.text)
        if param is not None:
            assert error_of(r)["param"] == param, (body, r.text)
    with admin(stack) as a:
        off = a.put("/policies/factual", json={"enabled": False})
        assert off.status_code == 200, off.text
        r = a.post(
            "/cache/entries",
            json={"tenant": "a", "request": _chat("What is the capital of Peru?"),
                  "answer": "Lima", "category": "factual"},
        )  # fmt: skip
        assert r.status_code == 400 and "caching is off" in error_of(r)["message"]
        assert a.get("/cache/entries").json()["data"] == []
