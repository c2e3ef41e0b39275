"""Where a model's replicas run: GPU groups or CPU cores, and a ledger of what is held.

Pure functions over an ``Inventory`` (``devices.py``) and an ``Allocation`` (the ledger of
placed replicas): nothing here starts a process. The supervisor estimates a model's memory
(``estimate.estimate_memory``), asks ``place()`` for its replicas, ``reserve()``s the answer in its
``Allocation`` before starting the engines and ``release()``s a replica when its engine is
gone; each ``Placement`` carries the engine's environment and options. A model that does not
fit raises ``DoesNotFit`` at once, with one line naming what it needs and what is free, so
nothing starts that would die of OOM in a restart loop.

Rules (the README's "Devices and placement" says the same for users; the estimate's own are in
``estimate.py``):

* A GPU replica gets ``--gpu-memory-utilization`` = its share of the GPU's *total* memory
  (vLLM's meaning), rounded up to 1/1000, at least ``min_gpu_share`` when configured. A
  tensor-parallel group uses one share for every GPU (vLLM applies one value per rank), sized on
  the group's smallest GPU: same-memory groups are preferred, mixed ones waste the difference.
* One replica goes to the GPU (group) with the least room that still holds it, so small models
  share a GPU and whole GPUs stay free for big ones; replicas of one model go to different GPUs
  first. ``auto`` = one replica per GPU (group) that has room, never two of the model on one GPU.
* On CPU a replica owns ``cores_per_replica`` cores (``VLLM_CPU_OMP_THREADS_BIND``), handed out
  from the highest core down; its KV cache (``VLLM_CPU_KVCACHE_SPACE``, whole GiB, at least
  ``min_cpu_kvcache_gib``) and weights come out of RAM. An explicit count may use every core
  (two tiny models on a 2-core machine, one core each); ``auto`` leaves the lowest
  ``reserved_cores`` core(s) to the gateway and the services. Cores are never shared.

"Free" is the inventory's free memory minus what the ledger holds: the inventory must be the one
taken before this gateway started engines, or pass a fresh one through ``baseline()``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from llf_common.errors import BadRequest, InsufficientStorage

from llf_inference.devices import GIB, GpuDevice, Inventory

# The estimate's names the supervisor imports from here (beside place()) are re-exported as they are.
from llf_inference.estimate import DEFAULT_CPU_OVERHEAD_BYTES as DEFAULT_CPU_OVERHEAD_BYTES
from llf_inference.estimate import DEFAULT_GPU_OVERHEAD_BYTES as DEFAULT_GPU_OVERHEAD_BYTES
from llf_inference.estimate import KvShape as KvShape
from llf_inference.estimate import MemoryEstimate
from llf_inference.estimate import estimate_memory as estimate_memory

SHARE_STEP = 1000  # gpu_memory_utilization is rounded up to 1/SHARE_STEP


class DoesNotFit(InsufficientStorage):
    """The model cannot be placed on the devices that are free; nothing was started.

    507 like the registry's full disk: the request is valid and the model exists, but the
    server has no room for it now. Not 503: waiting frees nothing (stopping a model does), and a
    Retry-After would invite the retry loop this check exists to prevent. Not 409: the client
    did nothing that conflicts; the machine is simply full (or too small).
    """

    code = "does_not_fit"


@dataclass(frozen=True)
class PlacementRequest:
    """``llf serve MODEL [--replicas N|auto] [--gpus 0,1]`` as placement sees it."""

    model: str
    memory: MemoryEstimate
    replicas: int | Literal["auto"] = 1
    tensor_parallel_size: int = 1  # GPUs per replica; a CPU replica's size is cores_per_replica
    gpus: tuple[int, ...] | None = None  # --gpus: only these (NVML indices); None = all
    device: Literal["cuda", "cpu"] | None = None  # None = the inventory's (cuda when it has GPUs)
    min_gpu_share: float | None = None  # the gpu_memory_utilization setting, as a floor
    cores_per_replica: int = 1
    reserved_cores: int = 1  # CPU, auto only: the lowest cores left to the gateway and services
    min_cpu_kvcache_gib: int = 1  # the cpu_kvcache_space setting, as a floor


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


def place(
    inventory: Inventory,
    allocation: Allocation,
    request: PlacementRequest,
    new_id: Callable[[int], str] | None = None,
) -> tuple[Placement, ...]:
    """Every replica of ``request`` placed, or ``DoesNotFit``; the ledger is read, never changed.

    ``new_id(k)`` names the k-th new replica (default ``"<model>#<n>"``, n unused in the ledger).
    ``BadRequest`` for ``--gpus`` naming a GPU there is not; ``ValueError`` for counts below 1.
    """
    if request.tensor_parallel_size < 1 or request.cores_per_replica < 1:
        raise ValueError("tensor_parallel_size and cores_per_replica must be at least 1")
    if request.replicas != "auto" and request.replicas < 1:
        raise ValueError("replicas must be at least 1 or 'auto'")
    device = request.device or inventory.device
    if device == "cpu" and request.gpus is not None:
        why = f"; {inventory.nvml_error}" if inventory.nvml_error else ""
        raise BadRequest(f"--gpus {','.join(map(str, request.gpus))}: engines run on the CPU here{why}")
    ids = new_id or _default_ids(request.model, allocation)
    if device == "cuda":
        return _place_gpu(inventory.restricted(request.gpus), allocation, request, ids)
    return _place_cpu(inventory, allocation, request, ids)


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


def gib(n: int, *, up: bool = False) -> str:
    """Bytes as GiB for messages, one decimal at most: ``38``, ``7.5``; ``up`` rounds a need up."""
    tenths = n * 10 / GIB
    value = (math.ceil(tenths - 1e-9) if up else math.floor(tenths + 1e-9)) / 10
    return f"{value:.1f}".removesuffix(".0")


def _run(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


def _default_ids(model: str, allocation: Allocation) -> Callable[[int], str]:
    """``new_id`` that hands out ``<model>#<n>`` with the smallest n the ledger does not hold (k-th call: k-th name)."""
    used = {p.replica_id for p in allocation.placements}
    fresh = (name for n in itertools.count() if (name := f"{model}#{n}") not in used)
    names: list[str] = []

    def new_id(k: int) -> str:
        while len(names) <= k:
            names.append(next(fresh))
        return names[k]

    return new_id


# ---------------------------------------------------------------- the search
def _place_gpu(
    inventory: Inventory, allocation: Allocation, request: PlacementRequest, ids: Callable[[int], str]
) -> tuple[Placement, ...]:
    tp, auto = request.tensor_parallel_size, request.replicas == "auto"
    need = request.memory.per_gpu(tp)
    floor = round((request.min_gpu_share or 0) * SHARE_STEP)
    held = {g.index: allocation.gpu_reserved(g.index) for g in inventory.gpus}
    mine = {g.index: sum(p.model == request.model for p in allocation.on_gpu(g.index)) for g in inventory.gpus}
    free_before = {g.index: max(0, g.free_bytes - held[g.index]) for g in inventory.gpus}
    placed: list[Placement] = []
    while auto or len(placed) < int(request.replicas):
        usable = [g for g in inventory.gpus if g.free_bytes - held[g.index] >= need and not (auto and mine[g.index])]
        fits = [f for c in itertools.combinations(usable, tp) if (f := _fit(c, held, mine, need, floor))]
        if not fits:
            break
        _, share, group, holds = min(fits)
        placed.append(
            Placement(
                replica_id=ids(len(placed)),
                model=request.model,
                device="cuda",
                gpus=group,
                gpu_reserved_bytes=holds,
                gpu_memory_utilization=share / SHARE_STEP,
            )
        )
        for index, hold in zip(group, holds, strict=True):
            held[index] += hold
            mine[index] += 1
    if not placed or (not auto and len(placed) < int(request.replicas)):
        raise DoesNotFit(_gpu_refusal(inventory, request, need, placed, free_before, auto and any(mine.values())))
    return tuple(placed)


_Fit = tuple[tuple[int, int, int, tuple[int, ...]], int, tuple[int, ...], tuple[int, ...]]


def _fit(
    group: tuple[GpuDevice, ...], held: dict[int, int], mine: dict[int, int], need: int, floor: int
) -> _Fit | None:
    """(score, share, indices, bytes held on each) if the replica fits on ``group``, else ``None``.

    The lowest score wins: same-memory GPUs, then fewest replicas of this model, then least room left.
    """
    smallest = min(g.total_bytes for g in group)
    share = max(-(-need * SHARE_STEP // smallest), floor)
    holds = tuple(-(-share * g.total_bytes // SHARE_STEP) for g in group)
    left = [g.free_bytes - held[g.index] - hold for g, hold in zip(group, holds, strict=True)]
    if share > SHARE_STEP or min(left) < 0:
        return None
    indices = tuple(g.index for g in group)
    spread = max(g.total_bytes for g in group) - smallest
    return (spread, sum(mine[i] for i in indices), sum(left), indices), share, indices, holds


def _gpu_refusal(
    inventory: Inventory,
    request: PlacementRequest,
    need: int,
    placed: list[Placement],
    free: dict[int, int],
    one_per_gpu: bool,
) -> str:
    tp = request.tensor_parallel_size
    what = f"{tp} GPU{'s' if tp > 1 else ''} with ≥ {gib(need, up=True)} GiB" + (
        f" each for tensor_parallel_size {tp}" if tp > 1 else ""
    )
    if request.replicas != "auto" and request.replicas > 1:
        head = f"{request.model}: {len(placed)} of {request.replicas} replicas fit; each needs {what}"
    else:
        head = f"{request.model} needs {what}"
    listed = [f"GPU{i} {gib(b)} GiB" for i, b in free.items() if b >= GIB // 10]
    tail = ", ".join(listed) or "none"
    if not inventory.gpus and inventory.nvml_error:
        tail += f" ({inventory.nvml_error})"
    if one_per_gpu:
        tail += " (auto places one replica of a model per GPU)"
    return f"{head}; free: {tail}"


def _place_cpu(
    inventory: Inventory, allocation: Allocation, request: PlacementRequest, ids: Callable[[int], str]
) -> tuple[Placement, ...]:
    cpu, per = inventory.cpu, request.cores_per_replica
    holders = allocation.core_holders()
    free_cores = [c for c in cpu.cores if c not in holders]
    kept = set(cpu.cores[: request.reserved_cores]) if request.replicas == "auto" else set()
    usable = sorted((c for c in free_cores if c not in kept), reverse=True)
    ram_each = request.memory.cpu_bytes(request.min_cpu_kvcache_gib)
    ram_free = max(0, cpu.ram_available_bytes - allocation.ram_reserved())
    fits = min(len(usable) // per, ram_free // ram_each)
    count = fits if request.replicas == "auto" else request.replicas
    if count < 1 or count > fits:
        raise DoesNotFit(_cpu_refusal(request, max(count, 1), ram_each, free_cores, ram_free, holders, kept))
    return tuple(
        Placement(
            replica_id=ids(k),
            model=request.model,
            device="cpu",
            cores=tuple(sorted(usable[k * per : (k + 1) * per])),
            ram_bytes=ram_each,
            cpu_kvcache_space_gib=request.memory.kv_cache_gib(request.min_cpu_kvcache_gib),
        )
        for k in range(count)
    )


def _cpu_refusal(
    request: PlacementRequest,
    count: int,
    ram_each: int,
    free_cores: list[int],
    ram_free: int,
    holders: dict[int, Placement],
    kept: set[int],
) -> str:
    cores = count * request.cores_per_replica
    subject = f"{count} replicas of {request.model} need" if count > 1 else f"{request.model} needs"
    need = f"{subject} {gib(count * ram_each, up=True)} GiB RAM and {cores} free core{'s' if cores > 1 else ''}"
    free = f"{len(free_cores)} core{'' if len(free_cores) == 1 else 's'}"
    if free_cores:
        free += f" ({core_ranges(free_cores)})"
    notes = []
    if holders:
        held = sorted(holders)
        models = ", ".join(dict.fromkeys(holders[c].model for c in held))
        noun, verb = ("core", "holds") if len(held) == 1 else ("cores", "hold")
        notes.append(f"{noun} {','.join(map(str, held))} {verb} replicas of {models}")
    if kept & set(free_cores):
        notes.append(f"auto keeps core {core_ranges(kept)} for the gateway")
    suffix = f" ({'; '.join(notes)})" if notes else ""
    return f"{need}; free: {free}, {gib(ram_free)} GiB RAM{suffix}"
