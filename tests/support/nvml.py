"""A fake NVML: the ``pynvml`` calls ``llf_inference.devices`` makes, answered from a list of GPUs.

Unit tests build one directly (``FakeNvml.of(80, 24)``); ``scripts/gpu-check.sh --fake`` can
describe a machine in one string (``FakeNvml.parse("80,80,24:12")``: total GiB, optionally
``:free`` GiB). Errors are ``FakeNvmlError`` (like pynvml's ``NVMLError``), and a fake built with
``fail_init`` behaves like a machine without the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GIB = 1 << 30


class FakeNvmlError(Exception):
    """What pynvml's ``NVMLError`` is to the real library."""


@dataclass(frozen=True)
class FakeMemory:
    total: int
    free: int
    used: int


@dataclass(frozen=True)
class FakeGpu:
    total_bytes: int
    free_bytes: int
    name: str = "NVIDIA Fake GPU"
    uuid: str = ""


@dataclass
class FakeNvml:
    """Implements ``llf_inference.devices.Nvml``; counts init/shutdown so tests can check they pair up."""

    gpus: list[FakeGpu] = field(default_factory=list)
    fail_init: str | None = None
    inits: int = 0
    shutdowns: int = 0

    @classmethod
    def of(cls, *totals_gib: float, free_gib: dict[int, float] | None = None) -> FakeNvml:
        """GPUs of these sizes (GiB), all free unless ``free_gib`` says otherwise for an index."""
        free = free_gib or {}
        return cls(
            [
                FakeGpu(
                    total_bytes=int(total * GIB),
                    free_bytes=int(free.get(i, total) * GIB),
                    name=f"NVIDIA Fake {total:g}GB",
                    uuid=f"GPU-00000000-0000-0000-0000-{i:012d}",
                )
                for i, total in enumerate(totals_gib)
            ]
        )

    @classmethod
    def parse(cls, spec: str) -> FakeNvml:
        """``"80,80,24:12"``: one GPU per comma, ``total[:free]`` in GiB; ``""`` is a machine with none."""
        totals: list[float] = []
        free: dict[int, float] = {}
        for i, part in enumerate(p for p in spec.split(",") if p.strip()):
            total, _, left = part.partition(":")
            totals.append(float(total))
            if left:
                free[i] = float(left)
        return cls.of(*totals, free_gib=free)

    def nvmlInit(self) -> None:
        if self.fail_init is not None:
            raise FakeNvmlError(self.fail_init)
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        if not 0 <= index < len(self.gpus):
            raise FakeNvmlError("Invalid Argument")
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle: object) -> str:
        return _gpu(handle).name

    def nvmlDeviceGetUUID(self, handle: object) -> str:
        return _gpu(handle).uuid

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> FakeMemory:
        gpu = _gpu(handle)
        return FakeMemory(total=gpu.total_bytes, free=gpu.free_bytes, used=gpu.total_bytes - gpu.free_bytes)


def _gpu(handle: object) -> FakeGpu:
    if not isinstance(handle, FakeGpu):
        raise FakeNvmlError("Invalid Argument")
    return handle
