"""/admin/cache: stats, entries, delete and flush against a real cache on SQLite."""

from __future__ import annotations

from pathlib import Path

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
