"""Micro-batching of embedding requests, run off the event loop.

Requests that arrive together are grouped into one ``embed_batch`` call
(bounded by ``max_batch`` texts; by default it waits for nobody: the texts that
queued while the model was busy form the next batch, so an idle model adds no
latency and a busy one batches naturally) that runs in a single worker thread,
so the event loop never blocks on the model.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from backends.embedding import Embedder, Matrix, Vector
from backends.errors import EmbedderError


@dataclass(frozen=True)
class BatchLimits:
    max_batch: int = 32
    max_wait_s: float = 0.0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if not 0 <= self.max_wait_s <= 1:
            raise ValueError("max_wait_s must be within [0, 1] seconds")


@dataclass
class _Pending:
    text: str
    future: asyncio.Future[Vector]


class BatchingEmbedder:
    """Async front of an :class:`Embedder` that micro-batches concurrent calls."""

    def __init__(self, embedder: Embedder, limits: BatchLimits | None = None) -> None:
        self.embedder = embedder
        self.limits = limits or BatchLimits()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self.batches = 0
        self.embedded = 0

    @property
    def dim(self) -> int:
        return self.embedder.dim

    @property
    def name(self) -> str:
        return self.embedder.name

    async def start(self) -> None:
        if self._worker is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run(), name="embed-batcher")

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def embed(self, text: str) -> Vector:
        """Embed one text; concurrent callers share one model call."""
        if self._queue is None:
            await self.start()
        assert self._queue is not None  # set by start(); narrows the type for mypy
        future: asyncio.Future[Vector] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(text, future))
        return await future

    async def embed_many(self, texts: Sequence[str]) -> Matrix:
        """Embed a list as one batch (used by ``/v1/embeddings``)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.embedder.embed_batch, list(texts))

    async def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the model reads for ``texts``, counted off the event loop."""
        count = self.embedder.count_tokens
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: sum(count(t) for t in texts))

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            # Continuous batching: take whatever queued up while the model was busy.
            # Waiting for more (max_wait_s > 0) only adds latency when the model is idle.
            deadline = loop.time() + self.limits.max_wait_s
            while len(batch) < self.limits.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
            live = [p for p in batch if not p.future.done()]
            if not live:
                continue
            try:
                vectors = await loop.run_in_executor(
                    self._pool, self.embedder.embed_batch, [p.text for p in live]
                )
            except EmbedderError as exc:
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self.batches += 1
            self.embedded += len(live)
            for p, vec in zip(live, vectors, strict=True):
                if not p.future.done():
                    p.future.set_result(vec)
