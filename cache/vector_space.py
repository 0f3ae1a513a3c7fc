"""Which embedder wrote the store's vectors, and what to do when another one starts.

Vectors of two models of the same dimension compare without error and mean nothing
against each other: a store filled by one model and searched with another would serve
answers on meaningless similarities. The store therefore records the space of its
vectors — the embedder's name and its vectors of a few fixed probe texts, which the
caller supplies (``backends.space``) — on first open, and every later open compares:
the same model (any runtime, any path) agrees on the probes, another one does not. On
disagreement the cache refuses to open (``refuse``, the default) or deletes every entry
and adopts the new space (``flush``).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from cache.errors import CacheError, SpaceMismatch
from cache.store import DocumentStore

log = logging.getLogger("cachegate.cache")

META_KEY = "vector_space"
# Lowest per-probe cosine at which two embedders count as one space. The bundled export
# against the same model with int8 activations too measured 0.992 at worst; unrelated
# vectors (another model, or the probes in another order) about 0. The proxy applies the
# same rule to the bundled artifacts' space.
SAME_SPACE_COSINE = 0.95
OnSpaceChange = Literal["refuse", "flush"]


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
class Settled:
    """What :func:`settle` left: the store's space record this cache agrees with (every
    later insert and the periodic check compare against it) and how many entries it
    deleted."""

    record: str
    deleted: int


async def settle(
    store: DocumentStore, space: VectorSpace, on_change: OnSpaceChange, now: float
) -> Settled:
    """Makes sure the store holds vectors of ``space``; with ``on_change="flush"`` a store
    of another embedder is emptied and takes ``space`` as its own.

    A store without a record (new, or written before records existed, when the bundled
    embedder was the only one) takes ``space`` as its own. Raises :class:`SpaceMismatch`
    with ``refuse``, :class:`CacheUnavailable` when the store cannot be reached."""
    record = await store.claim_meta(META_KEY, space.encode(), now)
    stored = VectorSpace.decode(record)
    fit = space.agreement(stored)
    if fit >= SAME_SPACE_COSINE:
        return Settled(record, 0)
    if on_change == "refuse":
        raise SpaceMismatch(
            f"the cache store holds vectors of embedder {stored.name!r}, and embedder "
            f"{space.name!r} writes another vector space (probe agreement {fit:.2f} < "
            f"{SAME_SPACE_COSINE}); set cache.on_embedder_change: flush to delete those "
            "entries, or point storage.url at another database"
        )
    record = space.encode()
    # The record and the deletes commit together: replicas still running the old
    # embedder find the new record in their next insert's transaction and stop writing.
    ids = await store.replace_all(META_KEY, record, "embedder", now)
    log.warning(
        "embedder changed from %r to %r (probe agreement %.2f): deleted %d cache entries",
        stored.name,
        space.name,
        fit,
        len(ids),
    )
    return Settled(record, len(ids))
