"""``/v1/status`` devices: every GPU (idle ones too) or the CPU, with what llf placed on each."""

from __future__ import annotations

from llf_inference.allocation import Placement
from llf_inference.device_status import device_statuses
from llf_inference.devices import GIB, CpuDevice, GpuDevice, Inventory

CPU = CpuDevice((0, 1), 32 * GIB, 30 * GIB)


def test_every_gpu_is_listed_with_the_replicas_and_memory_llf_placed_on_it() -> None:
    inventory = Inventory(
        gpus=(
            GpuDevice(0, "Fake 24G", "GPU-0", 24 * GIB, 23 * GIB),
            GpuDevice(1, "Fake 24G", "GPU-1", 24 * GIB, 24 * GIB),
            GpuDevice(2, "Fake 80G", "GPU-2", 80 * GIB, 80 * GIB),
        ),
        cpu=CPU,
    )
    held = [
        Placement("r0", "a/chat", "cuda", gpus=(0,), gpu_reserved_bytes=(6 * GIB,), gpu_memory_utilization=0.25),
        Placement("r1", "b/big", "cuda", gpus=(0, 1), gpu_reserved_bytes=(10 * GIB, 10 * GIB)),
    ]
    gpu0, gpu1, gpu2 = device_statuses(inventory, held)
    assert (gpu0.index, gpu0.name, gpu0.total_bytes, gpu0.free_bytes) == (0, "Fake 24G", 24 * GIB, 23 * GIB)
    assert gpu0.replicas == ["r0", "r1"] and gpu0.models == ["a/chat", "b/big"] and gpu0.reserved_bytes == 16 * GIB
    assert gpu1.replicas == ["r1"] and gpu1.reserved_bytes == 10 * GIB
    assert gpu2.replicas == [] and gpu2.models == [] and gpu2.reserved_bytes == 0  # idle GPUs are listed too
    assert {d.device for d in (gpu0, gpu1, gpu2)} == {"cuda"}


def test_without_gpus_the_cpu_is_one_device_with_its_cores_and_the_replicas_bound_to_them() -> None:
    held = [
        Placement("r0", "a/x", "cpu", cores=(1,), ram_bytes=2 * GIB),
        Placement("r1", "b/y", "cpu", cores=(0,), ram_bytes=3 * GIB),
    ]
    [cpu] = device_statuses(Inventory(gpus=(), cpu=CPU), held)
    assert cpu.device == "cpu" and cpu.cores == [0, 1] and cpu.index is None
    assert cpu.replicas == ["r0", "r1"] and cpu.models == ["a/x", "b/y"]
    assert (cpu.total_bytes, cpu.free_bytes, cpu.reserved_bytes) == (32 * GIB, 30 * GIB, 5 * GIB)
