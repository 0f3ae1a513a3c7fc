"""The replay benchmark on a tiny slice of the real data, against a live cachegate.

Reads ``../shared/data`` (beside the repository, as in CI); when it is missing the tests
fail with a message naming the file, they do not skip.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.procs import free_port
from bench.replay import ReplayError, replay
from bench.report import by_category, summarize
from bench.targets import artifact_present, cachegate, cachegate_config, sim
from bench.workload import WorkloadError, build_workload, reuse_ceiling


def test_replay_counts_add_up(tmp_path: Path) -> None:
    workload = build_workload(max_requests=40, speedup=200.0, seed=1)
    assert len(workload.requests) == 40
    router = artifact_present("router", "default_router.npz")
    equivalence = artifact_present("cache", "equivalence.npz")
    cfg = cachegate_config(
        "http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1", tmp_path / "t.db",
        equivalence=equivalence, router=router,
    )  # fmt: skip
    with sim("small", 0.1) as small, sim("large", 0.1) as large:
        for b, url in zip(cfg["backends"], (small, large), strict=True):
            b["base_url"] = url
        with cachegate(cfg) as proxy:
            outcomes = asyncio.run(replay(proxy, workload, progress=False, label="test"))
    s = summarize(outcomes)
    assert s.requests == 40 and s.errors == 0
    assert s.hits + s.misses + s.bypass == s.requests
    assert s.correct_hits + s.wrong_hits == s.hits
    assert s.backend_calls == s.misses + s.bypass
    # Repeated intents exist in the slice, and exact repeats at least must hit.
    assert reuse_ceiling(workload.requests) > 0 and s.hits > 0
    cats = by_category(outcomes)
    assert sum(c.requests for name, c in cats.items() if name != "overall") == 40


def test_replay_fails_loudly_when_the_proxy_is_down() -> None:
    workload = build_workload(max_requests=3, speedup=200.0)
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ReplayError, match="cannot reach"):
        asyncio.run(replay(url, workload, progress=False))


def test_missing_data_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match=r"AzureLLMInferenceTrace_\w+\.csv is missing"):
        build_workload(max_requests=3, root=tmp_path)
