"""The agent-loop benchmark on a tiny slice of the real data, against live cachegates:
every request is either served from the cache or reaches the backend, and the variant
that keeps tool calls out of the cache never serves one."""

from __future__ import annotations

from bench.agent_replay import compare
from bench.workload import build_workload


def test_agent_replay_counts_add_up() -> None:
    requests = build_workload(max_requests=40, speedup=200.0, seed=1).requests
    tallies = compare(requests, concurrency=2)
    repeated_texts = len(requests) - len({r.text for r in requests})
    assert tallies["verbatim"].call_hits == tallies["verbatim"].step_hits == repeated_texts
    for name in ("cachegate-no-tool-calls", "cachegate"):
        t = tallies[name]
        assert t.sessions == len(requests) and t.errors == 0, name
        assert t.backend_calls + t.call_hits + t.step_hits == 2 * t.sessions, name
    assert tallies["cachegate-no-tool-calls"].call_hits == 0
    assert tallies["cachegate"].call_hits > 0 and tallies["cachegate"].step_hits > 0
