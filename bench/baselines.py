"""Baselines for the replay: threshold fitting on the dev part, and a GPTCache server.

Fitting (``fit_threshold``): replays a dev workload offline through a plain cosine cache
(each miss stored, each request served by its nearest stored request when the cosine is at
least the threshold) and picks the threshold with the most hits whose false-hit share
(wrong hits / hits) stays within ``max_false``. Used for GPTCache's threshold (cachegate's
single-global-policy variant is fitted with its own rule, ``bench.replay.fit_global``).
Fitted on families never replayed.

GPTCache server (``python -m bench.baselines serve-gptcache``): GPTCache 0.1.44 as its own
process in front of the simulated backend, with its sqlite + faiss data manager,
``SearchDistanceEvaluation`` and cachegate's MiniLM embedder, so its latency includes one
HTTP hop like cachegate's. GPTCache's L2 distance on unit vectors is ``2 - 2 cos`` and it
serves when ``4 - d >= 4 t``; a cosine threshold ``c`` is GPTCache threshold ``(c + 1) / 2``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from bench.embcache import embed_texts
from bench.workload import Request


@dataclass(frozen=True)
class FitPoint:
    threshold: float
    hits: int
    wrong: int
    requests: int

    @property
    def false_share(self) -> float:
        return self.wrong / self.hits if self.hits else 0.0


def simulate(requests: Sequence[Request], vecs: np.ndarray, threshold: float) -> FitPoint:
    """A cache over stored misses: the nearest stored request serves when its cosine
    reaches ``threshold`` (GPTCache's rule)."""
    stored = np.zeros((len(requests), vecs.shape[1]), dtype=np.float32)
    intents: list[str] = []
    hits = wrong = 0
    for r, v in zip(requests, vecs, strict=True):
        n = len(intents)
        if n:
            sims = stored[:n] @ v
            k = int(np.argsort(-sims)[0])
            if sims[k] >= threshold:
                hits += 1
                wrong += intents[k] != r.intent
                continue
        stored[n] = v
        intents.append(r.intent)
    return FitPoint(threshold, hits, wrong, len(requests))


def fit_threshold(
    requests: Sequence[Request], max_false: float = 0.01, grid: Sequence[float] | None = None
) -> tuple[FitPoint, list[FitPoint]]:
    """The threshold with the most hits whose false-hit share is within ``max_false``
    (the highest threshold of the grid when none is)."""
    vecs = embed_texts([r.text for r in requests])
    if grid is None:
        grid = [round(0.70 + 0.01 * i, 2) for i in range(30)]
    points = [simulate(requests, vecs, t) for t in grid]
    ok = [p for p in points if p.false_share <= max_false]
    best = max(ok, key=lambda p: p.hits) if ok else points[-1]
    return best, points


def gptcache_threshold(cosine: float) -> float:
    return (cosine + 1) / 2


# -- the GPTCache server --------------------------------------------------------------


class GptCacheService:
    """GPTCache's get/put, run on one thread (GPTCache is synchronous, faiss not thread-safe)."""

    def __init__(self, workdir: str, threshold: float) -> None:
        from gptcache import Cache, Config
        from gptcache.manager import CacheBase, VectorBase, get_data_manager
        from gptcache.processor.pre import get_prompt
        from gptcache.similarity_evaluation import SearchDistanceEvaluation

        from backends import OnnxEmbedder

        self.embedder = OnnxEmbedder()
        self._vectors: dict[str, np.ndarray] = {}
        data = get_data_manager(
            CacheBase("sqlite", sql_url=f"sqlite:///{workdir}/gptcache.db"),
            VectorBase("faiss", dimension=self.embedder.dim, index_path=f"{workdir}/faiss.index"),
            max_size=1_000_000,
        )
        self.cache = Cache()
        self.cache.init(
            pre_embedding_func=get_prompt,
            embedding_func=self._embed,
            data_manager=data,
            similarity_evaluation=SearchDistanceEvaluation(),
            config=Config(similarity_threshold=threshold),
        )
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gptcache")
        # Embedding runs beside GPTCache's thread (ONNX Runtime releases the GIL), as
        # cachegate's embedder does beside its index thread.
        self.embed_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="embed")

    def embed(self, text: str) -> None:
        self._vectors[text] = self.embedder.embed_batch([text])[0]

    def _embed(self, text: str, **_: Any) -> np.ndarray:
        # get() then put() of one miss embed the same text: compute it once.
        v = self._vectors.get(text)
        return self.embedder.embed_batch([text])[0] if v is None else v

    def get(self, text: str) -> str | None:
        from gptcache.adapter.api import get

        answer = get(text, cache_obj=self.cache)
        if answer is not None:
            self._vectors.pop(text, None)
        return None if answer is None else str(answer)

    def put(self, text: str, answer: str) -> None:
        from gptcache.adapter.api import put

        put(text, answer, cache_obj=self.cache)
        self._vectors.pop(text, None)


def gptcache_app(service: GptCacheService, backend: str, model: str) -> web.Application:
    app = web.Application()
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def startup(app: web.Application) -> None:
        app[session_key] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))

    async def cleanup(app: web.Application) -> None:
        await app[session_key].close()

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        text = str(body["messages"][-1]["content"])
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(service.embed_pool, service.embed, text)
        cached = await loop.run_in_executor(service.thread, service.get, text)
        if cached is not None:
            return web.Response(
                text=cached, content_type="application/json", headers={"x-cachegate-cache": "hit"}
            )
        async with app[session_key].post(
            backend + "/chat/completions", json={**body, "model": model}
        ) as resp:
            raw = await resp.text()
            status = resp.status
        if status == 200:
            await loop.run_in_executor(service.thread, service.put, text, raw)
        return web.Response(
            text=raw,
            status=status,
            content_type="application/json",
            headers={"x-cachegate-cache": "miss", "x-cachegate-backend": "large"},
        )

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": model, "object": "model"}]})

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/healthz", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve-gptcache")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--backend", required=True, help="backend /v1 base URL")
    serve.add_argument("--model", default="sim-large")
    serve.add_argument("--threshold", type=float, required=True, help="GPTCache's threshold")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        service = GptCacheService(workdir, args.threshold)
        app = gptcache_app(service, args.backend.rstrip("/"), args.model)
        web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
    print(json.dumps({"stopped": True}))


if __name__ == "__main__":
    main()
