"""Which embedder wrote the store's vectors, and what to do when another one starts.

Vectors of two models of the same dimension compare without error and mean nothing
against each other: a store filled by one model and searched with another would serve
answers on meaningless similarities. The store therefore records the space of its
vectors — the embedder's name and its vectors of a few fixed probe texts, which the
caller supplies (``backends.space``) — on first open, and every later open compares:
the same model (any runtime, any path) agrees on the probes, another one does not. On
disagreement the cache refuses to open (``refuse``, the default), deletes every entry
and adopts the new space (``flush``), or embeds every stored request text again with the
new model and keeps the entries (``reembed``).

The record also carries a generation, raised by every flush and re-embedding: index
snapshots name the generation they were taken under, so a snapshot of vectors that a
re-embedding replaced (same ids, other vectors) is never restored. A re-embedding in
progress is part of the record (how far it got), so one that is interrupted is resumed,
never taken for finished.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from cache.errors import CacheError, SpaceMismatch
from cache.store import DocumentStore, MetaValue

log = logging.getLogger("cachegate.cache")

META_KEY = "vector_space"
# Lowest per-probe cosine at which two embedders count as one space. The bundled export
# against the same model with int8 activations too measured 0.992 at worst; unrelated
# vectors (another model, or the probes in another order) about 0. The proxy applies the
# same rule to the bundled artifacts' space.
SAME_SPACE_COSINE = 0.95
OnSpaceChange = Literal["refuse", "flush", "reembed"]
#: Embeds texts with the new model: one unit vector per text, in order.
Reembed = Callable[[Sequence[str]], Awaitable[npt.NDArray[np.float32]]]
#: Rows re-embedded per transaction (and per progress record).
REEMBED_PAGE = 512
#: A re-embedding whose record has not moved for this long is taken to have died and is
#: taken over; younger ones are waited for (another replica is doing it).
REEMBED_STALE_S = 120.0


@dataclass(frozen=True, slots=True)
class VectorSpace:
    """An embedder's name and its vectors of fixed probe texts (one row per text)."""

    name: str
    probe: npt.NDArray[np.float32]

    def encode(self) -> str:
        probe = np.ascontiguousarray(self.probe, dtype="<f4")
        return json.dumps(
            {
                "name": self.name,
                "shape": list(probe.shape),
                "probe": base64.b64encode(probe.tobytes()).decode(),
            }
        )

    @classmethod
    def decode(cls, text: str) -> VectorSpace:
        try:
            raw = json.loads(text)
            probe = np.frombuffer(base64.b64decode(raw["probe"]), dtype="<f4")
            return cls(str(raw["name"]), probe.reshape(tuple(raw["shape"])).astype(np.float32))
        except (ValueError, KeyError, TypeError) as exc:
            raise CacheError(f"unreadable {META_KEY} record in the cache store: {exc}") from exc

    def agreement(self, other: VectorSpace) -> float:
        """Lowest cosine between matching probe vectors; -1 for another shape."""
        a, b = self.probe, other.probe
        if a.shape != b.shape or a.ndim != 2:
            return -1.0
        dots = np.sum(a * b, axis=1)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        return float(np.min(dots / np.clip(norms, 1e-12, None)))


@dataclass(frozen=True, slots=True)
class SpaceRecord:
    """The store's ``vector_space`` record: whose vectors it holds, since which
    generation, and, while a re-embedding is under way, the last id it finished."""

    space: VectorSpace
    generation: int = 0
    #: ``None`` when every vector is of ``space``; else ids up to this one are.
    reembedded_through: int | None = None
    #: Who is re-embedding (host and process; see :func:`_me`).
    owner: str | None = None

    def encode(self) -> str:
        raw = json.loads(self.space.encode())
        raw["generation"] = self.generation
        if self.reembedded_through is not None:
            raw["reembedded_through"] = self.reembedded_through
            raw["owner"] = self.owner
        return json.dumps(raw)

    @classmethod
    def decode(cls, text: str) -> SpaceRecord:
        try:
            raw = json.loads(text)
            through = raw.get("reembedded_through")
            owner = raw.get("owner")
            return cls(
                VectorSpace.decode(text),
                int(raw.get("generation", 0)),
                None if through is None else int(through),
                None if owner is None else str(owner),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise CacheError(f"unreadable {META_KEY} record in the cache store: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Settled:
    """What :func:`settle` left: the store's space record this cache agrees with (every
    later insert and every poll of the change feed compare against it) and its
    generation."""

    record: str
    generation: int


async def settle(
    store: DocumentStore,
    space: VectorSpace,
    on_change: OnSpaceChange,
    now: float,
    reembed: Reembed | None = None,
) -> Settled:
    """Makes sure the store holds vectors of ``space``. With ``on_change="flush"`` a store
    of another embedder is emptied and takes ``space`` as its own; with ``"reembed"``
    every stored request text is embedded again by ``reembed`` (required then).

    A store without a record (new, or written before records existed, when the bundled
    embedder was the only one) takes ``space`` as its own. Raises :class:`SpaceMismatch`
    with ``refuse``, :class:`CacheUnavailable` when the store cannot be reached."""
    if on_change == "reembed" and reembed is None:
        raise CacheError("on_embedder_change reembed needs the embedder to re-embed with")
    text = await store.claim_meta(META_KEY, SpaceRecord(space).encode(), now)
    stored = SpaceRecord.decode(text)
    fit = space.agreement(stored.space)
    ours = fit >= SAME_SPACE_COSINE
    if ours and stored.reembedded_through is None:
        return Settled(text, stored.generation)
    # Past here the store holds another embedder's vectors, or (``ours``) is half
    # re-embedded into this one's.
    if on_change == "refuse" and ours:
        raise SpaceMismatch(
            f"the cache store is half re-embedded for embedder {stored.space.name!r} "
            f"(entries up to id {stored.reembedded_through}); set "
            "cache.on_embedder_change: reembed to finish it, or flush"
        )
    if on_change == "refuse":
        raise SpaceMismatch(
            f"the cache store holds vectors of embedder {stored.space.name!r}, and embedder "
            f"{space.name!r} writes another vector space (probe agreement {fit:.2f} < "
            f"{SAME_SPACE_COSINE}); set cache.on_embedder_change: flush to delete those "
            "entries or reembed to embed them again, or point storage.url at another "
            "database"
        )
    if on_change == "reembed" and ours:
        assert reembed is not None
        return await _reembed(store, space, await _wait_for_other(store, stored), reembed)
    if on_change == "reembed":
        assert reembed is not None
        log.warning(
            "embedder changed from %r to %r (probe agreement %.2f): embedding the cache's "
            "request texts again",
            stored.space.name,
            space.name,
            fit,
        )
        start = SpaceRecord(space, stored.generation + 1, reembedded_through=0, owner=_me())
        # The record changes first: replicas still on the old model stop writing at once.
        await store.set_meta(META_KEY, start.encode(), time.time())
        return await _reembed(store, space, start, reembed)
    text = SpaceRecord(space, stored.generation + 1).encode()
    # The record and the deletes commit together: replicas still running the old
    # embedder find the new record in their next insert's transaction and stop writing.
    ids = await store.replace_all(META_KEY, text, "embedder", now)
    log.warning(
        "embedder changed from %r to %r (probe agreement %.2f): deleted %d cache entries",
        stored.space.name,
        space.name,
        fit,
        len(ids),
    )
    return Settled(text, stored.generation + 1)


async def _reembed(
    store: DocumentStore, space: VectorSpace, record: SpaceRecord, reembed: Reembed
) -> Settled:
    """Embeds the request text of every entry past ``record.reembedded_through`` again,
    a page per transaction that also moves the record on; then marks it finished.

    ``record`` is the start record just written, or an interrupted one after
    :func:`_wait_for_other`."""
    if record.reembedded_through is None:  # another replica finished it meanwhile
        return Settled(record.encode(), record.generation)
    through = record.reembedded_through
    total = await store.count_from(through)
    done, started = 0, time.monotonic()
    last_log = started
    while True:
        page = await store.texts_after(through, REEMBED_PAGE)
        if not page:
            break
        vectors = await reembed([t for _, t in page])
        if vectors.shape != (len(page), space.probe.shape[1]):
            raise CacheError(f"re-embedding returned shape {vectors.shape} for {len(page)} texts")
        through = page[-1][0]
        progress = replace(record, reembedded_through=through, owner=_me()).encode()
        await store.replace_vectors(
            [(eid, v) for (eid, _), v in zip(page, vectors, strict=True)],
            META_KEY,
            progress,
            time.time(),
        )
        done += len(page)
        if time.monotonic() - last_log >= 5.0 or done == total:
            last_log = time.monotonic()
            rate = done / max(last_log - started, 1e-9)
            log.info(
                "re-embedding cache entries: %d/%d (%.0f%%), %.0f/s, about %.0f s left",
                done,
                total,
                100.0 * done / max(total, 1),
                rate,
                max(total - done, 0) / max(rate, 1e-9),
            )
    final = replace(record, reembedded_through=None, owner=None).encode()
    await store.set_meta(META_KEY, final, time.time())
    log.warning(
        "re-embedded %d cache entries for embedder %r in %.1f s",
        done,
        space.name,
        time.monotonic() - started,
    )
    return Settled(final, record.generation)


async def _wait_for_other(store: DocumentStore, stored: SpaceRecord) -> SpaceRecord:
    """An unfinished re-embedding into our space is in the record: our own (this process
    retrying after a store outage, or a restarted container) resumes at once; while
    another replica's record keeps moving wait; once it is finished, take the finished
    record; once it has not moved for :data:`REEMBED_STALE_S` (its replica died), take
    it over from where it stopped."""
    while True:
        value: MetaValue | None = await store.meta_value(META_KEY)
        if value is None:
            return stored
        current = SpaceRecord.decode(value.value)
        if current.space.agreement(stored.space) < SAME_SPACE_COSINE:
            raise SpaceMismatch(
                f"another replica changed the cache store to embedder {current.space.name!r} "
                "while this one waited for a re-embedding"
            )
        if current.reembedded_through is None or current.owner == _me():
            return current
        if time.time() - value.updated_at >= REEMBED_STALE_S:
            log.warning(
                "taking over an interrupted re-embedding of the cache (through id %d)",
                current.reembedded_through,
            )
            return current
        log.info(
            "another replica is re-embedding the cache (through id %d); waiting",
            current.reembedded_through,
        )
        await asyncio.sleep(2.0)


def _me() -> str:
    """This process, as a re-embedding's owner: a restarted container keeps its host name
    and, as PID 1, its process id, and may resume its own run without waiting."""
    return f"{socket.gethostname()}:{os.getpid()}"
