"""``affinity``: consistent hashing with bounded loads over a model's routable replicas.

A key (session, user or prompt prefix; ``keys.py``) hashes to a point on a ring of the
replicas' virtual nodes; the first replica clockwise serves it, so every turn of one
conversation reaches the engine whose prefix cache already holds the conversation. A replica
past the bound, ``load_factor`` times the mean requests in flight (counting this one, rounded
up), passes the key on to the next replica on the ring (a *spill*), as KubeAI's PrefixHash and
"consistent hashing with bounded loads" (Mirrokni et al., 2018) do: no hot session can pile
onto one engine while the others idle. The ring is built from the routable replicas only, so
a replica that dies or drains moves just its own keys, to the next replica on the ring. A
request with no key goes to the least loaded replica.

Where a key landed is remembered (its *home*, in a bounded LRU map): the next turn of the
conversation goes to the replica that served the last one — the engine that holds the whole
history in its prefix cache — as long as that replica stays within the bound, even when the
ring alone would point elsewhere. Without it, a burst of new conversations that the bound
spread over the replicas would fall back onto the ring's (uneven) split on every later turn,
spill again past the bound and miss the cache it had just built (benchmark #10: 16
conversations split 12/4 by the ring).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections import OrderedDict
from collections.abc import Sequence

from llf_inference.routing import Choice, R, least_in_flight

VNODES = 100
"""Points per replica on the ring: with 2-8 replicas, keys split within a few % of evenly."""
HOMES = 65_536
"""Keys whose last replica is remembered (least recently used ones are forgotten first)."""


def point(text: str) -> int:
    """A stable 64-bit position (the same in every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Ring:
    """The replicas' virtual nodes, sorted; ``walk(key)`` lists replica ids clockwise from the key."""

    def __init__(self, ids: Sequence[str], vnodes: int = VNODES) -> None:
        nodes = sorted((point(f"{rid}#{i}"), rid) for rid in ids for i in range(vnodes))
        self._points = [p for p, _ in nodes]
        self._ids = [rid for _, rid in nodes]
        self.size = len(set(ids))

    def walk(self, key: str) -> list[str]:
        """Every replica id once, in ring order starting at ``key``'s position."""
        if not self._ids:
            return []
        start = bisect.bisect(self._points, point(key)) % len(self._ids)
        seen: list[str] = []
        for i in range(len(self._ids)):
            rid = self._ids[(start + i) % len(self._ids)]
            if rid not in seen:
                seen.append(rid)
                if len(seen) == self.size:
                    break
        return seen


class AffinityPolicy:
    """Keyed requests stick to their replica within the load bound; others go to the least loaded."""

    name = "affinity"

    def __init__(self, load_factor: float = 1.25, vnodes: int = VNODES, homes: int = HOMES) -> None:
        if load_factor < 1:
            raise ValueError("load_factor must be >= 1")
        self.load_factor = load_factor
        self.vnodes = vnodes
        self._rings: dict[tuple[str, ...], Ring] = {}
        self._homes: OrderedDict[str, str] = OrderedDict()
        self._max_homes = homes

    def ring(self, ids: Sequence[str]) -> Ring:
        """The ring of these replica ids (cached: the set changes only on start, stop or crash)."""
        members = tuple(sorted(ids))
        ring = self._rings.get(members)
        if ring is None:
            if len(self._rings) > 64:  # replica sets come and go; keep the cache small
                self._rings.clear()
            ring = self._rings[members] = Ring(members, self.vnodes)
        return ring

    def bound(self, replicas: Sequence[R]) -> int:
        """Most requests in flight a replica may have to take one more: ceil(factor * mean with this one)."""
        total = sum(r.in_flight for r in replicas) + 1
        return max(1, math.ceil(self.load_factor * total / len(replicas)))

    def choose(self, replicas: Sequence[R], key: str | None) -> Choice[R]:
        if key is None or len(replicas) == 1:
            return Choice(least_in_flight(replicas), "no_key" if key is None else "affinity_hit")
        by_id = {r.id: r for r in replicas}
        bound = self.bound(replicas)
        home = self._homes.get(key)
        if home in by_id and by_id[home].in_flight + 1 <= bound:
            self._homes.move_to_end(key)
            return Choice(by_id[home], "affinity_hit")
        for position, rid in enumerate(self.ring(list(by_id)).walk(key)):
            replica = by_id[rid]
            if replica.in_flight + 1 <= bound:
                first_visit = home is None and position == 0
                return Choice(self._remember(key, replica), "affinity_hit" if first_visit else "spill")
        return Choice(least_in_flight(replicas), "spill")  # unreachable with factor >= 1; kept as a guard

    def _remember(self, key: str, replica: R) -> R:
        """``replica`` is ``key``'s home from now on (it will hold the conversation's latest prefix)."""
        self._homes[key] = replica.id
        self._homes.move_to_end(key)
        if len(self._homes) > self._max_homes:
            self._homes.popitem(last=False)
        return replica
