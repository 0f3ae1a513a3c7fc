"""Backends misbehaving: a 429 storm, a slow-loris trickle, a stream cut mid-way.
Clients get whole answers or clean errors, and nothing partial is cached."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from backends.embedding import Embedder
from tests.hardening.conftest import KEY_A, Cfg, chat, start
from tests.stack import Stack


def _short_read_timeout(cfg: Cfg) -> None:
    for b in cfg["backends"]:
        b["read_timeout_s"] = 0.3
        b["retries"] = 0


def _stream(stack: Stack, text: str) -> tuple[int, list[str]]:
    body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": text}]}
    headers = {"Authorization": f"Bearer {KEY_A}"}
    with httpx.stream(
        "POST", stack.url + "/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        return r.status_code, events


def _clean_error(r: httpx.Response) -> None:
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]


def _not_cached(stack: Stack, text: str) -> None:
    stack.set_faults("small", throttle_rate=0.0, trickle_s=0.0, disconnect_after=None)
    stack.set_faults("large", throttle_rate=0.0, trickle_s=0.0, disconnect_after=None)
    stack.flush_writes()
    assert chat(stack, text).headers["x-cachegate-cache"] == "miss"


def test_throttle_storm_trickle_and_cut_streams(embedder: Embedder, tmp_path: Path) -> None:
    stack = start(embedder, tmp_path / "f.db", _short_read_timeout)
    try:
        # A 429 storm on both tiers: every request answered, each a clean error.
        stack.set_faults("small", throttle_rate=1.0)
        stack.set_faults("large", throttle_rate=1.0)
        statuses = set()
        for i in range(20):
            r = chat(stack, f"storm question {i}: what is the boiling point of water?")
            statuses.add(r.status_code)
            _clean_error(r)
        assert statuses <= {429, 502, 503}
        status, events = _stream(stack, "storm stream: name a famous painter")
        assert status in (429, 502, 503) or json.loads(events[-2])["error"]
        _not_cached(stack, "storm question 0: what is the boiling point of water?")

        # Slow-loris: chunks slower than the read timeout end in an in-band error + [DONE].
        stack.set_faults("small", trickle_s=1.0)
        status, events = _stream(stack, "Describe the water cycle in detail.")
        assert status == 200 and events[-1] == "[DONE]"
        assert json.loads(events[-2])["error"]["code"] == "backend_stream_broken"
        _not_cached(stack, "Describe the water cycle in detail.")

        # A stream cut after three chunks: an error event, [DONE], nothing cached.
        stack.set_faults("small", disconnect_after=3)
        status, events = _stream(stack, "Explain how a bicycle gear works.")
        assert status == 200 and events[-1] == "[DONE]"
        assert "error" in json.loads(events[-2])
        _not_cached(stack, "Explain how a bicycle gear works.")

        # Healthy again: a complete answer is cached as before.
        status, events = _stream(stack, "Why is the sky blue?")
        assert events[-1] == "[DONE]" and "error" not in events[-2]
        stack.flush_writes()
        assert chat(stack, "Why is the sky blue?").headers["x-cachegate-cache"] == "hit"
    finally:
        stack.stop()
