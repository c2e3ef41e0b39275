"""What this machine can run engines on: its GPUs (through NVML), else its CPU cores and RAM.

Placement (``placement.py``) needs a snapshot of the devices, not a live handle: ``discover()``
asks NVML once and returns a frozen ``Inventory``. NVML sits behind the ``Nvml`` protocol (the
subset of ``pynvml`` used here), so tests and ``scripts/gpu-check.sh --fake`` hand in a fake
(``tests/support/nvml.py``) and the real module is imported only when nothing is given.

No GPU is not an error: a machine without the NVIDIA driver, without ``nvidia-ml-py`` or whose
NVML fails to initialise has an inventory with no GPUs, and ``nvml_error`` says why, so
``llf status`` can tell "no GPU" from "a GPU the gateway cannot see".

GPU indices are NVML's, which enumerate by PCI bus id. An engine's ``CUDA_VISIBLE_DEVICES``
uses these indices together with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (see ``placement.Placement``):
CUDA's default order is "fastest first", which on a mixed box differs from NVML's. Indices,
not UUIDs, because some vLLM releases parse ``CUDA_VISIBLE_DEVICES`` entries with ``int()``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal, Protocol, cast

import psutil
from llf_common.errors import BadRequest

GIB = 1 << 30


class NvmlMemory(Protocol):
    """``nvmlDeviceGetMemoryInfo``'s answer: bytes."""

    @property
    def total(self) -> int: ...

    @property
    def free(self) -> int: ...


class Nvml(Protocol):
    """The part of ``pynvml`` (package ``nvidia-ml-py``) the inventory uses; a fake implements the same."""

    def nvmlInit(self) -> None: ...

    def nvmlShutdown(self) -> None: ...

    def nvmlDeviceGetCount(self) -> int: ...

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object: ...

    def nvmlDeviceGetName(self, handle: object) -> str | bytes: ...

    def nvmlDeviceGetUUID(self, handle: object) -> str | bytes: ...

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> NvmlMemory: ...


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as NVML saw it when the inventory was taken."""

    index: int
    name: str
    uuid: str
    total_bytes: int
    free_bytes: int

    @property
    def label(self) -> str:
        """How messages and status name it: ``GPU1``."""
        return f"GPU{self.index}"


@dataclass(frozen=True)
class CpuDevice:
    """The cores this process may run on (its affinity, not the machine's count) and the RAM."""

    cores: tuple[int, ...]
    ram_total_bytes: int
    ram_available_bytes: int


@dataclass(frozen=True)
class Inventory:
    """The devices engines can be placed on; ``gpus`` empty means engines run on the CPU."""

    gpus: tuple[GpuDevice, ...]
    cpu: CpuDevice
    nvml_error: str | None = None

    @property
    def device(self) -> Literal["cuda", "cpu"]:
        return "cuda" if self.gpus else "cpu"

    def gpu(self, index: int) -> GpuDevice:
        """The GPU with NVML index ``index`` (``KeyError`` if there is none)."""
        for gpu in self.gpus:
            if gpu.index == index:
                return gpu
        raise KeyError(f"GPU{index}")

    def restricted(self, indices: Iterable[int] | None) -> Inventory:
        """Only the GPUs named (``--gpus 0,1``); ``None`` keeps them all. Unknown indices: ``BadRequest``."""
        if indices is None:
            return self
        wanted = sorted(set(indices))
        known = {gpu.index for gpu in self.gpus}
        missing = [i for i in wanted if i not in known]
        if missing:
            have = ",".join(str(i) for i in sorted(known)) or "none"
            raise BadRequest(f"--gpus: no GPU {','.join(map(str, missing))} on this machine (GPUs: {have})")
        return replace(self, gpus=tuple(g for g in self.gpus if g.index in wanted))


def parse_gpus(text: str | None) -> tuple[int, ...] | None:
    """``"0,1"`` → ``(0, 1)``; ``None``/``""``/``"all"`` → ``None`` (every GPU). ``BadRequest`` otherwise."""
    if text is None or text.strip() in ("", "all"):
        return None
    try:
        indices = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise BadRequest(f"--gpus takes GPU indices like 0,1 (got {text!r})") from None
    if any(i < 0 for i in indices):
        raise BadRequest(f"--gpus takes GPU indices like 0,1 (got {text!r})")
    return indices


def discover(nvml: Nvml | None = None, cpu: CpuDevice | None = None) -> Inventory:
    """The machine's inventory; ``nvml`` defaults to the real ``pynvml``, ``cpu`` to this process's view."""
    cpu = cpu or discover_cpu()
    if nvml is None:
        try:
            nvml = cast(Nvml, importlib.import_module("pynvml"))
        except ImportError:
            return Inventory(gpus=(), cpu=cpu, nvml_error="nvidia-ml-py is not installed")
    try:
        gpus = discover_gpus(nvml)
    except Exception as exc:  # pynvml raises NVMLError subclasses, a fake anything
        return Inventory(gpus=(), cpu=cpu, nvml_error=f"NVML: {exc or type(exc).__name__}")
    return Inventory(gpus=gpus, cpu=cpu, nvml_error=None if gpus else "NVML lists no GPU")


def discover_gpus(nvml: Nvml) -> tuple[GpuDevice, ...]:
    """Every GPU NVML lists, in its index order; NVML errors propagate."""
    nvml.nvmlInit()
    try:
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GpuDevice(
                    index=index,
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                    total_bytes=int(memory.total),
                    free_bytes=int(memory.free),
                )
            )
        return tuple(gpus)
    finally:
        nvml.nvmlShutdown()


def discover_cpu() -> CpuDevice:
    """This process's cores (``sched_getaffinity``: a container's cpuset, a ``taskset``) and RAM."""
    memory = psutil.virtual_memory()
    return CpuDevice(
        cores=tuple(sorted(os.sched_getaffinity(0))),
        ram_total_bytes=int(memory.total),
        ram_available_bytes=int(memory.available),
    )


def _text(value: str | bytes) -> str:
    """Old ``nvidia-ml-py`` releases answer bytes, new ones str."""
    return value.decode() if isinstance(value, bytes) else value
