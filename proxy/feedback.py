"""Which cached entry (and which in-context examples) a response id refers to.

``POST /v1/feedback`` names a response id. A served hit maps straight to its
entry; a miss is stored write-behind, so its entry is found later by scope and
text. Examples the small model was shown are remembered so a rating can teach
the router which examples help. Bounded in memory: feedback is for recent answers.

The log keeps no vectors: a miss's entry is found by its exact key (scope and
text), and a vector held here was a row view that kept the embedder's whole batch
matrix alive. A record is about 0.7 kB instead of 2.3 kB (384-dimensional
vectors), so the default 20,000 records hold about 14 MB, not 45 MB.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from cache import CacheScope


@dataclass(frozen=True)
class ResponseRecord:
    tenant: str
    scope: CacheScope | None
    text: str
    vector: npt.NDArray[np.float32] | None  # dropped by ResponseLog.add
    category: str
    entry_id: int | None  # set when the response was a cache hit
    example_ids: tuple[int, ...] = ()
    tier: str | None = None


class ResponseLog:
    def __init__(self, capacity: int = 20_000) -> None:
        self._records: OrderedDict[str, ResponseRecord] = OrderedDict()
        self._capacity = capacity

    def add(self, response_id: str, record: ResponseRecord) -> None:
        if record.vector is not None:
            record = replace(record, vector=None)
        self._records[response_id] = record
        self._records.move_to_end(response_id)
        while len(self._records) > self._capacity:
            self._records.popitem(last=False)

    def get(self, response_id: str) -> ResponseRecord | None:
        return self._records.get(response_id)

    def __len__(self) -> int:
        return len(self._records)
