"""Which cached entry (and which in-context examples) a response id refers to.

``POST /v1/feedback`` names a response id. A served hit maps straight to its
entry; a miss is stored write-behind, so its entry is found later by scope and
text. Examples the small model was shown are remembered so a rating can teach
the router which examples help. Bounded in memory: feedback is for recent answers.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cache import CacheScope


@dataclass(frozen=True)
class ResponseRecord:
    tenant: str
    scope: CacheScope | None
    text: str
    vector: npt.NDArray[np.float32] | None
    category: str
    entry_id: int | None  # set when the response was a cache hit
    example_ids: tuple[int, ...] = ()
    tier: str | None = None


class ResponseLog:
    def __init__(self, capacity: int = 20_000) -> None:
        self._records: OrderedDict[str, ResponseRecord] = OrderedDict()
        self._capacity = capacity

    def add(self, response_id: str, record: ResponseRecord) -> None:
        self._records[response_id] = record
        self._records.move_to_end(response_id)
        while len(self._records) > self._capacity:
            self._records.popitem(last=False)

    def get(self, response_id: str) -> ResponseRecord | None:
        return self._records.get(response_id)

    def __len__(self) -> int:
        return len(self._records)
