"""The replay benchmark on a tiny slice of the real data, against a live cachegate.

Reads ``../shared/data`` (beside the repository, as in CI); when it is missing the tests
fail with a message naming the file, they do not skip.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.embcache import embed_texts
from bench.procs import free_port
from bench.replay import (
    POLICY_GRID,
    ReplayError,
    fit_global,
    global_policy,
    replay,
    simulate_categories,
)
from bench.report import by_category, summarize
from bench.targets import artifact_present, cachegate, cachegate_config, sim
from bench.workload import WorkloadError, build_workload, reuse_ceiling
from cache import EquivalenceChecker
from proxy.settings import settings_from_mapping
from proxy.wiring import build_policies


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


def test_global_variant_is_one_policy_for_every_category(tmp_path: Path) -> None:
    # Built-in categories have their own equivalence thresholds (math: 0.95); the global
    # baseline must override every one of them, or it is partly per-category.
    cfg = cachegate_config(
        "http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1", tmp_path / "t.db",
        default_policy=global_policy((0.93, None), 0.8),
    )  # fmt: skip
    policies = build_policies(settings_from_mapping(cfg).cache)
    assert {"math", "conversation", "creative", "time_sensitive"} <= set(policies)
    seen = {
        (p.enabled, p.similarity_threshold, p.threshold_floor, p.equivalence_threshold,
         p.equivalence_floor, p.ttl_seconds, p.ttl_max_factor)
        for p in [*policies.values(), policies.default]
    }  # fmt: skip
    assert seen == {(True, 0.93, 0.93, 0.8, 0.8, 86_400.0, 1.0)}


def test_fit_global_takes_the_most_hits_within_the_false_hit_budget() -> None:
    requests = build_workload(part="dev", max_requests=80, speedup=200.0, seed=2).requests
    checker = EquivalenceChecker.load_default()
    strict, s_hits, s_false = fit_global(requests, checker, max_false=0.0)
    loose, l_hits, l_false = fit_global(requests, checker, max_false=1.0)
    assert strict[0] in POLICY_GRID and s_false == 0
    assert l_hits >= s_hits
    # What it reports is what the offline cache gives at that point.
    vecs = embed_texts([r.text for r in requests])
    one = dict.fromkeys((r.text for r in requests), "all")
    assert simulate_categories(requests, vecs, {"all": loose}, checker, None, one)["all"] == (
        l_hits,
        l_false,
    )
