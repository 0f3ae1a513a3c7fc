"""Another embedding model is never mixed with what was learned or stored with MiniLM.

The stand-in for "another model" is the real MiniLM turned by a fixed random rotation:
its own vectors compare as well as MiniLM's do (so its own cache works), but against
MiniLM's they are unrelated, as a different model's would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from backends import Matrix, OnnxEmbedder
from backends.space import probe
from cache import SemanticCache, SpaceMismatch, VectorSpace
from proxy.errors import SettingsError
from proxy.services import build_services
from proxy.settings import settings_from_mapping
from tests.stack import Stack, base_config, free_port, wait_until

Cfg = dict[str, Any]


class Rotated:
    """MiniLM's vectors in another basis: a different vector space of the same width."""

    def __init__(self, inner: OnnxEmbedder) -> None:
        self.inner = inner
        q, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(inner.dim, inner.dim)))
        self.turn = q.astype(np.float32)

    @property
    def name(self) -> str:
        return "rotated-minilm"

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed_batch(self, texts: Sequence[str]) -> Matrix:
        return np.asarray(self.inner.embed_batch(texts) @ self.turn, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def learned_parts_off(db: Path, cfg: Cfg | None = None, **cache: Any) -> Cfg:
    """``cfg`` (a fresh one by default) on a SQLite file, classifier, equivalence check
    and router off: what another model can run with."""
    cfg = base_config(free_port(), free_port()) if cfg is None else cfg
    cfg["storage"] = {"url": f"sqlite+aiosqlite:///{db}"}
    cfg["classifier"] = {"enabled": False}
    cfg["router"] = {"enabled": False}
    cfg["cache"] = {"equivalence_check": False, **cache}
    return cfg


async def test_learned_parts_refuse_another_space(embedder: OnnxEmbedder) -> None:
    settings = settings_from_mapping(base_config(free_port(), free_port()))
    with pytest.raises(SettingsError) as err:
        await build_services(settings, embedder=Rotated(embedder))
    message = str(err.value)
    assert "rotated-minilm" in message and "all-MiniLM-L6-v2" in message
    for key in ("classifier.enabled", "cache.equivalence_check", "router.enabled"):
        assert key in message


async def test_store_of_another_embedder_is_refused(embedder: OnnxEmbedder, tmp_path: Path) -> None:
    db = tmp_path / "cache.db"
    services = await build_services(settings_from_mapping(learned_parts_off(db)), embedder=embedder)
    await services.aclose()
    other = settings_from_mapping(learned_parts_off(db))
    with pytest.raises(
        SpaceMismatch, match=r"all-MiniLM-L6-v2.*rotated-minilm.*on_embedder_change"
    ):
        await build_services(other, embedder=Rotated(embedder))


QUESTION = "How do I reverse a list in Python?"
PARAPHRASE = "How can I reverse a list in Python?"


def _ask(stack: Stack, text: str) -> str:
    with openai.OpenAI(base_url=stack.url + "/v1", api_key="x", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="large", messages=[{"role": "user", "content": text}]
        )
    return raw.headers["x-cachegate-cache"]


def test_flush_on_embedder_change_starts_the_cache_afresh(
    embedder: OnnxEmbedder, tmp_path: Path
) -> None:
    db = tmp_path / "cache.db"
    with Stack(embedder, configure=lambda c: learned_parts_off(db, c)) as minilm:
        assert _ask(minilm, QUESTION) == "miss"
        minilm.flush_writes()
        assert _ask(minilm, PARAPHRASE) == "hit"
    flush = {"on_embedder_change": "flush"}
    with Stack(Rotated(embedder), configure=lambda c: learned_parts_off(db, c, **flush)) as rotated:
        # MiniLM's entry is gone (kept, the exact tier would have served it) ...
        assert _ask(rotated, QUESTION) == "miss"
        rotated.flush_writes()
        # ... and the new model's own entries serve paraphrases as MiniLM's did.
        assert _ask(rotated, PARAPHRASE) == "hit"


def test_int8_embedder_keeps_the_learned_parts_and_the_store(
    embedder: OnnxEmbedder, int8_embedder: OnnxEmbedder, tmp_path: Path
) -> None:
    # embedder.quantize: int8 moves vectors by about 1 %: the same space, so classifier,
    # equivalence check and router stay on and a store written by the float model serves
    # its queries.
    def on_file(cfg: Cfg) -> None:
        cfg["storage"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'cache.db'}"}

    with Stack(embedder, configure=on_file) as exact:
        assert _ask(exact, "How do I reverse a list in Python?") == "miss"
        exact.flush_writes()
    with Stack(int8_embedder, configure=on_file) as quick:
        assert _ask(quick, "How can I reverse a list in Python?") == "hit"
        metrics = httpx.get(quick.url + "/metrics", timeout=10).text
        assert (
            'cachegate_embedder_info{dim="384",name="all-MiniLM-L6-v2-int8-dynamic"} 1.0' in metrics
        )


def test_store_back_after_startup_with_another_model_stays_unused(
    embedder: OnnxEmbedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The store is unreachable when cachegate starts (its folder does not exist yet), so
    # it serves without a cache and retries; meanwhile another model claims the store.
    # When the retry reaches it, cachegate must keep serving without it, not mix spaces.
    folder = tmp_path / "later"
    other = Rotated(embedder)
    claim = VectorSpace(other.name, probe(other))

    def on_later_store(cfg: Cfg) -> None:
        learned_parts_off(folder / "cache.db", cfg)

    with Stack(embedder, configure=on_later_store) as stack:
        assert _ask(stack, "What is the capital of France?") == "bypass"
        folder.mkdir()

        async def claimed() -> None:
            cache = await SemanticCache.open(
                f"sqlite+aiosqlite:///{folder / 'cache.db'}", space=claim
            )
            await cache.close()

        asyncio.run(claimed())
        refused = "holds vectors of embedder 'rotated-minilm'"
        assert wait_until(lambda: refused in caplog.text, timeout=15)
        stack.flush_writes()
        assert _ask(stack, "What is the capital of France?") == "bypass"


def test_replica_left_on_the_old_embedder_bypasses_the_cache(
    embedder: OnnxEmbedder, tmp_path: Path
) -> None:
    # A rolling upgrade: one replica still runs MiniLM when another starts with a new model
    # and on_embedder_change: flush. The old one must stop serving and writing MiniLM
    # vectors into a store that now holds the new model's: its requests bypass the cache.
    db = tmp_path / "cache.db"
    flush = {"on_embedder_change": "flush"}

    def serving(stack: Stack) -> bool:
        return "cachegate_cache_serving 1.0" in httpx.get(stack.url + "/metrics", timeout=10).text

    def with_admin(cfg: Cfg) -> None:
        learned_parts_off(db, cfg)
        cfg["auth"]["admin_key_env"] = "TEST_ADMIN_KEY"

    def admin_stats(stack: Stack) -> dict[str, Any]:
        headers = {"Authorization": "Bearer adm"}
        reply = httpx.get(stack.url + "/admin/cache/stats", headers=headers, timeout=10)
        reply.raise_for_status()
        stats: dict[str, Any] = reply.json()
        return stats

    with Stack(embedder, configure=with_admin, env={"TEST_ADMIN_KEY": "adm"}) as old:
        assert _ask(old, QUESTION) == "miss"
        old.flush_writes()
        assert _ask(old, QUESTION) == "hit"
        assert serving(old) and admin_stats(old)["serving"] is True
        with Stack(Rotated(embedder), configure=lambda c: learned_parts_off(db, c, **flush)) as new:
            assert wait_until(lambda: not serving(old), timeout=15)
            assert admin_stats(old)["serving"] is False
            assert _ask(old, QUESTION) == "bypass"
            assert _ask(new, QUESTION) == "miss"
            new.flush_writes()
            assert _ask(new, QUESTION) == "hit"
            assert serving(new)


def test_reembed_on_embedder_change_keeps_the_cache(
    embedder: OnnxEmbedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "cache.db"
    with Stack(embedder, configure=lambda c: learned_parts_off(db, c)) as minilm:
        assert _ask(minilm, QUESTION) == "miss"
        minilm.flush_writes()
    reembed = {"on_embedder_change": "reembed"}
    with Stack(Rotated(embedder), configure=lambda c: learned_parts_off(db, c, **reembed)) as new:
        # Started at once, serving without the cache; the cache opens when re-embedded.
        def serving() -> bool:
            metrics = httpx.get(new.url + "/metrics", timeout=10).text
            return "cachegate_cache_serving 1.0" in metrics

        assert wait_until(serving, timeout=30)
        assert "re-embedded 1 cache entries for embedder 'rotated-minilm'" in caplog.text
        # MiniLM's entry, embedded again by the new model, serves its paraphrase.
        assert _ask(new, PARAPHRASE) == "hit"
