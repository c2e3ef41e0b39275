"""The pool's books: the replicas the supervisor holds, what it knows of each, and the state they add up to.

Everything here reads: which replicas are ready, which models the pool holds, where each replica
runs (its ``Placement``), the spec it was asked for before placement, which models sleep, what
the live replicas hold on the devices (the ledger a placement counts free room against) and the
pool's state for ``/v1/status``. ``Supervisor`` (``supervisor.py``) is a ``Roster`` and the only
code that changes one: it adds and removes the replicas and keeps these records in step.
"""

from __future__ import annotations

from llf_common.wire import GatewayState, ReplicaPlacement, ReplicaStatus

from llf_inference.allocation import Allocation, Placement
from llf_inference.engine.spec import EngineSpec
from llf_inference.replica import Replica


class Roster:
    """The replicas and their records; ``target`` is the model ``llf serve`` asked for last."""

    def __init__(self) -> None:
        self.replicas: list[Replica] = []
        self.target: str | None = None
        self.switching = False
        self.message: str | None = None
        self.placements: dict[str, Placement] = {}  # replica id -> where it runs
        self.asleep: set[str] = set()  # models whose engines sleep (vLLM sleep mode)
        self._bases: dict[str, EngineSpec] = {}  # replica id -> the spec before placement

    def ready(self, model: str | None = None) -> list[Replica]:
        return [r for r in self.replicas if r.state == "ready" and (model is None or r.model == model)]

    def served_models(self) -> list[str]:
        """Models with at least one ready replica, in pool order."""
        return list(dict.fromkeys(r.model for r in self.ready()))

    def models(self) -> list[str]:
        """Models with any replica in the pool, in pool order."""
        return list(dict.fromkeys(r.model for r in self.replicas))

    def find(self, rid: str) -> Replica | None:
        return next((r for r in self.replicas if r.id == rid), None)

    def in_flight(self, model: str) -> int:
        return sum(r.in_flight for r in self.replicas if r.model == model)

    def has(self, model: str) -> bool:
        return any(r.model == model for r in self.replicas)

    def base(self, replica: Replica) -> EngineSpec:
        """The spec ``replica`` was asked for, before its placement's devices were written into it."""
        return self._bases.get(replica.id, replica.spec)

    def placed(self, model: str) -> list[Placement]:
        """Where ``model``'s replicas run (those with a placement)."""
        return [self.placements[r.id] for r in self.replicas if r.model == model and r.id in self.placements]

    def ledger(self, exclude: str | None = None) -> Allocation:
        """What live replicas hold (an asleep model's GPU memory is free; failed ones hold nothing)."""
        held = []
        for replica in self.replicas:
            where = self.placements.get(replica.id)
            if where is None or replica.state == "failed" or replica.model == exclude:
                continue
            if replica.model in self.asleep and where.device == "cuda":
                continue
            held.append(where)
        return Allocation(held)

    def state(self) -> GatewayState:
        """The target model's state; ``loading`` while one model serves and another starts."""
        if self.switching:
            return "switching"
        mine = [r for r in self.replicas if r.model == self.target] if self.target else self.replicas
        if not mine:
            return "idle" if self.target is None else "starting"
        rest = [r for r in self.replicas if r not in mine]
        state = _pool_state([r.state for r in mine])
        if state == "ready" and any(r.state == "starting" for r in rest):
            return "loading"
        if state in ("starting", "failed") and any(r.state == "ready" for r in rest):
            return "loading" if state == "starting" else "degraded"
        return state

    def replica_status(self, replica: Replica) -> ReplicaStatus:
        """``replica``'s status with where it runs, as ``/v1/status`` lists it."""
        status = replica.status()
        where = self.placements.get(replica.id)
        if where is None:
            return status
        placement = ReplicaPlacement(
            device=where.device,
            gpus=list(where.gpus),
            gpu_memory_utilization=where.gpu_memory_utilization,
            cores=list(where.cores),
            ram_bytes=where.ram_bytes or None,
        )
        return status.model_copy(update={"placement": placement})


def _pool_state(states: list[str]) -> GatewayState:
    ready = states.count("ready")
    if ready == len(states):
        return "ready"
    if ready:
        return "degraded"
    if all(s == "failed" for s in states):
        return "failed"
    return "starting" if all(s == "starting" for s in states) else "degraded"
