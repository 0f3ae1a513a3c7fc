"""A bounded in-memory cache of stored documents.

Entries never change after they are written (only deletion, utility and feedback do), so
a copy held by id stays valid until the id is deleted. It saves the SQL round trip on hot
hits and lets hits be served while the store is down.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from cache.types import Tier, Vector


@dataclass(frozen=True, slots=True)
class Document:
    entry_id: int
    request_text: str
    answer: str
    backend: str
    tier: Tier
    prompt_tokens: int
    completion_tokens: int
    created_at: float
    category: str
    utility: float
    model_alias: str
    vector_bytes: bytes
    example_ok: bool = True

    def vector(self) -> Vector:
        return np.frombuffer(self.vector_bytes, dtype=np.float32)

    @classmethod
    def from_row(cls, r: Any) -> Document:
        return cls(
            entry_id=int(r.id),
            request_text=r.request_text,
            answer=r.answer,
            backend=r.backend,
            tier=r.tier,
            prompt_tokens=int(r.prompt_tokens),
            completion_tokens=int(r.completion_tokens),
            created_at=float(r.created_at),
            category=r.category,
            utility=float(r.utility),
            model_alias=r.model_alias,
            vector_bytes=bytes(r.vector),
            example_ok=bool(r.example_ok),
        )


class DocCache:
    """LRU of :class:`Document` by entry id, at most ``size`` items."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, Document] = OrderedDict()

    def get(self, entry_id: int) -> Document | None:
        doc = self._items.get(entry_id)
        if doc is not None:
            self._items.move_to_end(entry_id)
        return doc

    def put(self, doc: Document) -> Document:
        self._items[doc.entry_id] = doc
        self._items.move_to_end(doc.entry_id)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return doc

    def drop(self, entry_id: int) -> None:
        self._items.pop(entry_id, None)
