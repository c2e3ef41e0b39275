"""``least_loaded``: the replica with the fewest requests in flight, whatever the request is."""

from __future__ import annotations

from collections.abc import Sequence

from llf_inference.routing import Choice, R, least_in_flight


class LeastLoaded:
    """Spreads load evenly and ignores keys: every turn of a chat may land on a cold engine."""

    name = "least_loaded"

    def choose(self, replicas: Sequence[R], key: str | None) -> Choice[R]:
        return Choice(least_in_flight(replicas), "least_loaded")
