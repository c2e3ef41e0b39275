"""Routing policies: which of a model's routable replicas answers one request.

One small interface, ``RoutingPolicy.choose(replicas, key)``, and one module per policy:
``least.py`` (fewest requests in flight) and ``affinity.py`` (consistent hashing with
bounded loads, so a conversation keeps hitting the engine that holds its KV cache).
``keys.py`` says what a request is keyed on; ``responses.py`` remembers which replica
produced a ``/v1/responses`` id. The router (``router.py``) decides which replicas are
routable (ready, of the right model) and hands them over; a policy only orders them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

Decision = Literal["affinity_hit", "spill", "no_key", "least_loaded", "pinned"]
"""Why a replica was chosen: the key's own replica, the next one on the ring because the
key's own was past the load bound, no key to route on (least in flight), the
``least_loaded`` policy, or a replica named by ``previous_response_id``."""

DECISIONS: tuple[Decision, ...] = ("affinity_hit", "spill", "no_key", "least_loaded", "pinned")


class Routable(Protocol):
    """What a policy reads of a replica (``llf_inference.replica.Replica`` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def in_flight(self) -> int: ...


R = TypeVar("R", bound=Routable)


@dataclass(frozen=True)
class Choice(Generic[R]):
    replica: R
    decision: Decision


class RoutingPolicy(Protocol):
    """Chooses one of ``replicas`` (non-empty, all routable, pool order) for a request keyed by ``key``."""

    name: str

    def choose(self, replicas: Sequence[R], key: str | None) -> Choice[R]: ...


def least_in_flight(replicas: Sequence[R]) -> R:
    """The replica with the fewest requests in flight; ties go to the first in pool order."""
    best = replicas[0]
    for replica in replicas[1:]:
        if replica.in_flight < best.in_flight:
            best = replica
    return best


def make_policy(name: str, *, load_factor: float = 1.25) -> RoutingPolicy:
    """The policy a setting names (``least_loaded`` or ``affinity``)."""
    from llf_inference.routing.affinity import AffinityPolicy
    from llf_inference.routing.least import LeastLoaded

    if name == "least_loaded":
        return LeastLoaded()
    if name == "affinity":
        return AffinityPolicy(load_factor=load_factor)
    raise ValueError(f"unknown routing policy {name!r}; use least_loaded or affinity")
