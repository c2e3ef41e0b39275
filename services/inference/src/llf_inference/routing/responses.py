"""Which replica produced a ``/v1/responses`` answer, so ``previous_response_id`` finds it again.

vLLM keeps a stored response (and its conversation) in the engine process that made it: a
follow-up naming ``previous_response_id`` only works on that engine. The relay reports each
response id it sees go by; the map keeps the newest ``capacity`` of them (oldest forgotten
first), so memory stays bounded however long the gateway runs.
"""

from __future__ import annotations

import re
from collections import OrderedDict

RESPONSE_ID = re.compile(rb'"id"\s*:\s*"(resp_[A-Za-z0-9_-]{1,128})"')
"""vLLM's response ids (``resp_<hex>``), as they appear in a reply or the first stream events."""


class ResponseMap:
    """Response id → replica id, least recently seen forgotten first."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._map: OrderedDict[str, str] = OrderedDict()

    def remember(self, response_id: str, replica_id: str) -> None:
        self._map[response_id] = replica_id
        self._map.move_to_end(response_id)
        while len(self._map) > self.capacity:
            self._map.popitem(last=False)

    def seen(self, chunk: bytes, replica_id: str) -> bool:
        """Remember the response id in ``chunk`` (a reply or stream bytes), if there is one."""
        match = RESPONSE_ID.search(chunk)
        if match is None:
            return False
        self.remember(match.group(1).decode(), replica_id)
        return True

    def replica(self, response_id: object) -> str | None:
        return self._map.get(response_id) if isinstance(response_id, str) else None

    def __len__(self) -> int:
        return len(self._map)
