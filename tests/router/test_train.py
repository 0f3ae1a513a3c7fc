from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from backends import OnnxEmbedder
from router import (
    FitParams,
    RouteFeatures,
    RouterConfig,
    RouterError,
    calibrate_threshold,
    large_share_at,
    load_router,
    read_records,
    record_from_log,
    train_router,
)

TINY = Path(__file__).parent / "fixtures" / "tiny_outcomes.jsonl"
PARAMS = FitParams(
    knn_k=8,
    knn_tau=0.1,
    folds=4,
    min_category_rows=5,
    min_group_rows=5,
    stack_l2=((1.0, 1.0),),
)


@pytest.fixture(scope="module")
def trained(embedder: OnnxEmbedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    def embed(texts: Sequence[str]) -> np.ndarray:
        return embedder.embed_batch(list(texts))

    out = tmp_path_factory.mktemp("router") / "tiny.npz"
    report = train_router(TINY, embed, out, kind="blend", params=PARAMS)
    assert report.records == 62 and report.artifact == out and out.exists()
    assert report.cross_validated is not None and report.cross_validated.apgr > 0.5
    return out


def test_trained_router_sends_hard_prompts_large(trained: Path, features_for) -> None:  # type: ignore[no-untyped-def]
    router = load_router(trained)
    easy = features_for(["hey, how is it going?", "what is the capital of Italy?"])
    hard = features_for(
        [
            "Prove that every bounded monotone sequence of reals converges.",
            "Implement a red-black tree with deletion in C++.",
        ]
    )
    assert min(router.score(f) for f in easy) > max(router.score(f) for f in hard)


def test_train_then_calibrate_on_logged_scores(trained: Path, features_for) -> None:  # type: ignore[no-untyped-def]
    router = load_router(trained)
    prompts = [r.prompt for r in read_records(TINY)]
    scores = [router.score(f) for f in features_for(prompts)]
    threshold = calibrate_threshold(scores, 0.3)
    assert large_share_at(scores, threshold) == pytest.approx(0.3, abs=0.02)
    tuned = router.with_threshold(threshold)
    tiers = [tuned.decide(f).tier for f in features_for(prompts)]
    assert tiers.count("large") / len(tiers) == pytest.approx(0.3, abs=0.02)


@pytest.mark.parametrize("kind", ["logistic", "knn"])
def test_every_learned_kind_loads(trained: Path, kind: str) -> None:
    router = load_router(trained, RouterConfig(kind=kind))
    v = np.ones(384, dtype=np.float32) / np.sqrt(384)
    assert 0.0 <= router.score(RouteFeatures(vector=v)) <= 1.0


def test_untrainable_kind_refused(tmp_path: Path) -> None:
    with pytest.raises(RouterError, match="random"):
        train_router(TINY, lambda t: np.zeros((len(t), 384)), tmp_path / "x.npz", kind="random")


def test_bad_record_reported_with_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "a", "small_ok": true, "large_ok": true}\n{"prompt": "b", "small_ok": 3}\n'
    )
    with pytest.raises(RouterError, match=r"bad.jsonl:2: small_ok"):
        list(read_records(bad))


def test_log_record_keeps_only_the_served_tier() -> None:
    record = record_from_log("hi", "small", 1.0, category="conversation")
    assert (record.small_ok, record.large_ok) == (1.0, None)
    with pytest.raises(RouterError, match="tier"):
        record_from_log("hi", "xl", 1.0)


def test_missing_artifact_refused(tmp_path: Path) -> None:
    with pytest.raises(RouterError, match="cannot load"):
        load_router(tmp_path / "nope.npz")


def test_projected_artifact_and_format_4_load(
    trained: Path,
    embedder: OnnxEmbedder,
    features_for,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """The trained artifact holds a projected memory (format 5); one fitted without
    projection, written as format 4 (as before projection existed), still loads and
    scores the same; an unknown format is refused by number."""
    router = load_router(trained)
    assert router.model is not None and router.model.memory.basis is not None
    assert router.model.memory.vectors.shape[1] < 384 == router.model.dim

    def embed(texts: Sequence[str]) -> np.ndarray:
        return embedder.embed_batch(list(texts))

    wide = tmp_path / "wide.npz"
    train_router(TINY, embed, wide, kind="blend", params=replace(PARAMS, memory_dims=0))
    with np.load(wide) as data:
        arrays = {k: data[k] for k in data.files}
    assert "memory_basis" not in arrays
    for version, name in ((4, "format4.npz"), (99, "future.npz")):
        arrays["format_version"] = np.array(version)
        with (tmp_path / name).open("wb") as fh:
            np.savez_compressed(fh, **arrays)
    feats = features_for(["What is the derivative of x squared?", "Say hello."])
    legacy = load_router(tmp_path / "format4.npz")
    assert legacy.model is not None and legacy.model.memory.basis is None
    assert legacy.score_batch(feats) == load_router(wide).score_batch(feats)
    with pytest.raises(RouterError, match="format 99"):
        load_router(tmp_path / "future.npz")
