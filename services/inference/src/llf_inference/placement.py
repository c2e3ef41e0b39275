"""Where a model's replicas run: GPU groups or CPU cores, or one line saying why they do not fit.

Pure functions over an ``Inventory`` (``devices.py``) and an ``Allocation`` (``allocation.py``,
the ledger of placed replicas): nothing here starts a process. The supervisor (through
``placer.py``) estimates a model's memory (``estimate.py``), asks ``place()`` for its replicas and
reserves the answer in its ``Allocation`` before starting the engines; each ``Placement``
carries the engine's environment and options. A model that does not fit raises ``DoesNotFit`` at
once, with one line naming what it needs and what is free, so nothing starts that would die of
OOM in a restart loop.

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
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from llf_common.errors import BadRequest, InsufficientStorage

from llf_inference.allocation import Allocation, Placement, core_ranges
from llf_inference.devices import GIB, GpuDevice, Inventory
from llf_inference.estimate import MemoryEstimate

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


def gib(n: int, *, up: bool = False) -> str:
    """Bytes as GiB for messages, one decimal at most: ``38``, ``7.5``; ``up`` rounds a need up."""
    tenths = n * 10 / GIB
    value = (math.ceil(tenths - 1e-9) if up else math.floor(tenths + 1e-9)) / 10
    return f"{value:.1f}".removesuffix(".0")


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
