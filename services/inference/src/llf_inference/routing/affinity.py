"""``affinity``: consistent hashing with bounded loads over a model's routable replicas.

A key (session, user or prompt prefix; ``keys.py``) hashes to a point on a ring of the
replicas' virtual nodes; the first replica clockwise serves it, so every turn of one
conversation reaches the engine whose prefix cache already holds the conversation. A replica
past the bound, ``load_factor`` times the mean (counting this request, rounded up), passes the
key on to the next replica on the ring (a *spill*), as KubeAI's PrefixHash and "consistent
hashing with bounded loads" (Mirrokni et al., 2018) do: no hot session can pile onto one
engine while the others idle. The ring is built from the routable replicas only, so a replica
that dies or drains moves just its own keys, to the next replica on the ring. A request with
no key goes to the least loaded replica.

Where a key landed is remembered (its *home*, in a bounded LRU map): the next turn of the
conversation goes to the replica that served the last one — the engine that holds the whole
history in its prefix cache — as long as that replica stays within the bound, even when the
ring alone would point elsewhere. Without it, a burst of new conversations that the bound
spread over the replicas would fall back onto the ring's (uneven) split on every later turn,
spill again past the bound and miss the cache it had just built (benchmark #10: 16
conversations split 12/4 by the ring).

Whether a conversation stays home is judged on the replicas' *load*: the larger of their
requests in flight and their conversations that sent a request in the last ``active_s``
seconds. Requests in flight alone dip to zero between turns: the conversations on one engine
finish their answers in the same engine step, and in the milliseconds before their next turns
arrive the other engine's conversations looked past the bound and spilled, each spill
recomputing a whole history on an engine that had none of it (benchmark #10). A conversation
counts until its next turn is due, so those dips move nothing, while one key sending many
requests at once still spills on its requests in flight.

Where a key goes when it does not stay home is judged on requests in flight alone: its first
request (no home yet, or its home is gone) with the bound's factor at ``PLACEMENT_FACTOR``
(nothing of it is cached anywhere yet, so leaving its ring replica costs nothing and the
replicas start with even shares of the conversations), a spill with ``load_factor``.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence

from llf_inference.routing import Choice, R, least_in_flight

VNODES = 100
"""Points per replica on the ring: with 2-8 replicas, keys split within a few % of evenly."""
HOMES = 65_536
"""Keys whose last replica is remembered (least recently used ones are forgotten first)."""
PLACEMENT_FACTOR = 1.0
"""The bound's factor for a key's first request: no headroom above the mean (nothing to keep yet)."""
ACTIVE_S = 10.0
"""How long after its last request a conversation still counts as load on its home replica."""


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

    def __init__(
        self,
        load_factor: float = 1.25,
        vnodes: int = VNODES,
        homes: int = HOMES,
        active_s: float = ACTIVE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if load_factor < 1:
            raise ValueError("load_factor must be >= 1")
        self.load_factor = load_factor
        self.vnodes = vnodes
        self.active_s = active_s
        self._clock = clock
        self._rings: dict[tuple[str, ...], Ring] = {}
        self._homes: OrderedDict[str, str] = OrderedDict()
        self._max_homes = homes
        self._active: OrderedDict[str, tuple[str, float]] = OrderedDict()  # key -> (replica, last request)
        self._sessions: Counter[str] = Counter()  # replica id -> its active keys

    def ring(self, ids: Sequence[str]) -> Ring:
        """The ring of these replica ids (cached: the set changes only on start, stop or crash)."""
        members = tuple(sorted(ids))
        ring = self._rings.get(members)
        if ring is None:
            if len(self._rings) > 64:  # replica sets come and go; keep the cache small
                self._rings.clear()
            ring = self._rings[members] = Ring(members, self.vnodes)
        return ring

    def load(self, replica: R) -> int:
        """Requests in flight, or the conversations going on there if more (between turns nothing is in flight)."""
        return max(replica.in_flight, self._sessions[replica.id])

    def bound(self, replicas: Sequence[R], factor: float | None = None) -> int:
        """Most requests in flight a replica may have to take one more: ceil(factor * mean with this one)."""
        total = sum(r.in_flight for r in replicas) + 1
        return max(1, math.ceil((self.load_factor if factor is None else factor) * total / len(replicas)))

    def keeps(self, home: R, replicas: Sequence[R]) -> bool:
        """Whether a conversation stays on ``home``: its load within ``load_factor`` x the mean load."""
        total = sum(self.load(r) for r in replicas) + 1
        bound = max(1, math.ceil(self.load_factor * total / len(replicas)))
        return max(home.in_flight + 1, self._sessions[home.id]) <= bound

    def choose(self, replicas: Sequence[R], key: str | None) -> Choice[R]:
        if key is None or len(replicas) == 1:
            return Choice(least_in_flight(replicas), "no_key" if key is None else "affinity_hit")
        now = self._clock()
        self._expire(now)
        by_id = {r.id: r for r in replicas}
        home = self._homes.get(key)
        if home in by_id and self.keeps(by_id[home], replicas):
            return Choice(self._remember(key, by_id[home], now), "affinity_hit")
        # A spill, or a first placement (nothing cached to lose: keep the shares even).
        bound = self.bound(replicas, None if home in by_id else PLACEMENT_FACTOR)
        for position, rid in enumerate(self.ring(list(by_id)).walk(key)):
            replica = by_id[rid]
            if replica.in_flight + 1 <= bound:
                first_visit = home is None and position == 0
                return Choice(self._remember(key, replica, now), "affinity_hit" if first_visit else "spill")
        return Choice(least_in_flight(replicas), "spill")  # unreachable with factor >= 1; kept as a guard

    def _remember(self, key: str, replica: R, now: float) -> R:
        """``replica`` is ``key``'s home from now on (it will hold the conversation's latest prefix)."""
        self._homes[key] = replica.id
        self._homes.move_to_end(key)
        if len(self._homes) > self._max_homes:
            self._homes.popitem(last=False)
        previous = self._active.pop(key, None)
        if previous is not None:
            self._sessions[previous[0]] -= 1
        self._active[key] = (replica.id, now)
        self._sessions[replica.id] += 1
        if len(self._active) > self._max_homes:
            _, (rid, _) = self._active.popitem(last=False)
            self._sessions[rid] -= 1
        return replica

    def _expire(self, now: float) -> None:
        """Forget the activity of keys whose last request is older than ``active_s`` (oldest first)."""
        horizon = now - self.active_s
        while self._active:
            rid, seen = next(iter(self._active.values()))
            if seen >= horizon:
                return
            self._active.popitem(last=False)
            self._sessions[rid] -= 1
