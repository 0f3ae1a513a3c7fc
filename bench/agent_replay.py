"""Agent-loop replay: what caching tool calls and agent steps saves, and whether it is right.

Each session is one turn of an agent loop, as a framework runs it against the simulated
backend (which calls the first tool offered with ``{"query": <the question>}`` and gives
every call a random id, as models do):

1. the question, with a ``get_weather`` tool: the model answers with a tool call;
2. the client runs the call and sends the conversation back with the tool's result (a
   function of the intent of the call's ``query``): the model answers in text.

Questions come from the replay benchmark's workload (labelled paraphrase data, categories
with their repetition patterns; ``bench.workload``), one session per request, so every
hit can be judged:

- a call served from the cache is right when the stored call's ``query`` has the intent
  of the question asked;
- an answer served for a step is right when it is the answer to a question of the asked
  intent with the same tool result (the simulated answer names a digest of both); after
  a wrong call the step is wrong too (its result is the other question's).

Variants, side by side on the same sessions:

- ``none``: no cache; 2 backend calls a session;
- ``verbatim``: an exact-match cache of whole request bodies that replays stored answers
  verbatim (the default of a key-value LLM cache; counted offline: both steps hit when
  the very same question was asked before, since the replayed call keeps its id);
- ``cachegate-no-tool-calls``: cachegate with ``cache_tool_calls: false`` (calls always
  come from the backend, with new ids; only the steps can hit);
- ``cachegate``: the default.

Before 2026-12-03 cachegate cached neither a call nor a step: 0 hits on this workload.

    .venv/bin/python -m bench.agent_replay [--sessions 1500] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from backends.sim import answer_text
from bench.procs import machine
from bench.targets import artifact_present, cachegate, cachegate_config, sim
from bench.workload import Request, build_workload

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Look something up",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]
HEAD = re.compile(r"^\[[^\]]+\] answer to [0-9a-f]{12}")


@dataclass
class Tally:
    sessions: int = 0
    errors: int = 0
    call_hits: int = 0
    call_false: int = 0
    step_hits: int = 0
    step_false: int = 0
    backend_calls: int = 0
    wrong: list[tuple[str, str, str]] = field(default_factory=list)

    def row(self, name: str) -> str:
        total = 2 * self.sessions
        saved = 1 - self.backend_calls / total if total else 0.0
        return (
            f"| {name} | {self.call_hits / self.sessions:.1%} ({self.call_false} wrong)"
            f" | {self.step_hits / self.sessions:.1%} ({self.step_false} wrong)"
            f" | {self.backend_calls} ({saved:.1%} saved) | {self.errors} |"
        )


def tool_result(query: str, intent_of: dict[str, str]) -> str:
    """What the client's tool returns: a function of the intent the call asks about."""
    return json.dumps({"report": intent_of.get(query, "unknown:" + query)})


def _answer_head(question: str, result: str, model: str) -> str:
    body = {
        "messages": [{"role": "user", "content": question}, {"role": "tool", "content": result}]
    }
    head = HEAD.match(answer_text(model, body, 1))
    assert head is not None
    return head.group(0)


async def _ask(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], tally: Tally
) -> tuple[dict[str, Any], bool] | None:
    """The answer and whether it came from the cache; ``None`` (counted) on an error."""
    async with http.post(url + "/chat/completions", json=body) as r:
        if r.status != 200:
            tally.errors += 1
            return None
        answer: dict[str, Any] = await r.json()
        return answer, r.headers.get("x-cachegate-cache") == "hit"


async def session(
    http: aiohttp.ClientSession,
    url: str,
    req: Request,
    intent_of: dict[str, str],
    texts_of: dict[str, list[str]],
    tally: Tally,
) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": req.text}]
    body = {"model": "large", "messages": messages, "tools": TOOLS}
    tally.sessions += 1
    answered = await _ask(http, url, body, tally)
    if answered is None:
        return
    first, call_hit = answered
    message = first["choices"][0]["message"]
    (call,) = message["tool_calls"]
    query = json.loads(call["function"]["arguments"])["query"]
    if call_hit:
        tally.call_hits += 1
        wrong = intent_of.get(query) != req.intent
        tally.call_false += wrong
        if wrong:
            tally.wrong.append(("call", req.text, query))
    result = tool_result(query, intent_of)
    messages += [
        {"role": "assistant", "content": None, "tool_calls": message["tool_calls"]},
        {"role": "tool", "tool_call_id": call["id"], "content": result},
    ]
    answered = await _ask(http, url, body, tally)
    if answered is None:
        return
    second, step_hit = answered
    if step_hit:
        tally.step_hits += 1
        served = HEAD.match(second["choices"][0]["message"]["content"])
        model = second.get("model") or "sim-large"
        right = {_answer_head(t, result, model) for t in texts_of[req.intent]}
        wrong = served is None or served.group(0) not in right
        tally.step_false += wrong
        if wrong:
            tally.wrong.append(("step", req.text, result))


async def run(url: str, sim_url: str, requests: Sequence[Request], concurrency: int) -> Tally:
    intent_of = {r.text: r.intent for r in requests}
    texts_of: dict[str, list[str]] = {}
    for r in requests:
        texts_of.setdefault(r.intent, [])
        if r.text not in texts_of[r.intent]:
            texts_of[r.intent].append(r.text)
    tally = Tally()
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        before = await _received(http, sim_url)
        queue = list(requests)

        # Sessions of one worker run in order; a few workers overlap, as clients do.
        async def worker(k: int) -> None:
            for req in queue[k::concurrency]:
                await session(http, url, req, intent_of, texts_of, tally)

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        tally.backend_calls = await _received(http, sim_url) - before
    return tally


async def _received(http: aiohttp.ClientSession, sim_url: str) -> int:
    async with http.get(sim_url.removesuffix("/v1") + "/sim/requests") as r:
        served: int = (await r.json())["served"]
        return served


def verbatim(requests: Sequence[Request]) -> Tally:
    """The exact-match cache of whole bodies, counted: a question asked before hits both
    steps (its stored call is replayed with the same id, so the step's body repeats too)."""
    tally, seen = Tally(), set()
    for r in requests:
        tally.sessions += 1
        if r.text in seen:
            tally.call_hits += 1
            tally.step_hits += 1
        else:
            tally.backend_calls += 2
            seen.add(r.text)
    return tally


def compare(requests: Sequence[Request], concurrency: int) -> dict[str, Tally]:
    """Every variant on the same sessions (the cachegate ones live, each on a fresh cache)."""
    equivalence = artifact_present("cache", "equivalence.npz")
    tallies = {"none": Tally(sessions=len(requests), backend_calls=2 * len(requests))}
    tallies["verbatim"] = verbatim(requests)
    with sim("small", 0.0) as small, sim("large", 0.0) as large:
        for name, policy in (
            ("cachegate-no-tool-calls", {"cache_tool_calls": False}),
            ("cachegate", {}),
        ):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = cachegate_config(small, large, Path(tmp) / "a.db", default_policy=policy,
                                       equivalence=equivalence, router=False)  # fmt: skip
                with cachegate(cfg) as url:
                    tallies[name] = asyncio.run(run(url, large, requests, concurrency))
    return tallies


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sessions", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--show-wrong", type=int, default=5, help="wrong hits to print per variant")
    args = p.parse_args(argv)
    workload = build_workload(
        part="test", speedup=50.0, minutes=10.0, max_requests=args.sessions, seed=args.seed
    )
    requests = workload.requests[: args.sessions]
    repeats = len(requests) - len({r.intent for r in requests})
    print(f"{len(requests)} sessions, {repeats} of them ask an intent asked before; {machine()}")
    started = time.perf_counter()
    tallies = compare(requests, args.concurrency)
    print(f"({time.perf_counter() - started:.0f} s)")
    print()
    print("| variant | calls served from cache | steps served from cache "
          "| backend calls | errors |")  # fmt: skip
    print("|---|---|---|---|---|")
    for name, tally in tallies.items():
        print(tally.row(name))
    for name, tally in tallies.items():
        pairs = sorted({(asked, got) for kind, asked, got in tally.wrong if kind == "call"})
        if tally.wrong:
            print(f"\n{name}: {len(tally.wrong)} wrong hits; the calls came from "
                  f"{len(pairs)} pairs of questions the data labels different:")  # fmt: skip
        for asked, got in pairs[: args.show_wrong]:
            print(f"  asked {asked!r}, served the call stored for {got!r}")


if __name__ == "__main__":
    main()
