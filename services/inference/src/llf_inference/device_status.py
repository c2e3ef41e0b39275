"""What ``/v1/status`` says of each device: the inventory joined with the live placements.

A person deciding where the next model goes wants every GPU (idle ones too: their name and
memory) and what llf holds on each, not only the replicas' view of where they run.
"""

from __future__ import annotations

from collections.abc import Iterable

from llf_common.wire import DeviceStatus

from llf_inference.allocation import Placement
from llf_inference.devices import Inventory


def device_statuses(inventory: Inventory, held: Iterable[Placement]) -> list[DeviceStatus]:
    """One entry per GPU, else one for the CPU; ``held`` are the placements that hold room now."""
    holding = list(held)
    if inventory.gpus:
        devices = []
        for gpu in inventory.gpus:
            mine = [(p, p.gpus.index(gpu.index)) for p in holding if gpu.index in p.gpus]
            devices.append(
                DeviceStatus(
                    device="cuda",
                    index=gpu.index,
                    name=gpu.name,
                    total_bytes=gpu.total_bytes,
                    free_bytes=gpu.free_bytes,
                    reserved_bytes=sum(p.gpu_reserved_bytes[i] for p, i in mine if i < len(p.gpu_reserved_bytes)),
                    replicas=[p.replica_id for p, _ in mine],
                    models=list(dict.fromkeys(p.model for p, _ in mine)),
                )
            )
        return devices
    cpu = inventory.cpu
    mine_cpu = [p for p in holding if p.device == "cpu"]
    return [
        DeviceStatus(
            device="cpu",
            name=f"CPU ({len(cpu.cores)} cores)",
            total_bytes=cpu.ram_total_bytes,
            free_bytes=cpu.ram_available_bytes,
            reserved_bytes=sum(p.ram_bytes for p in mine_cpu),
            cores=list(cpu.cores),
            replicas=[p.replica_id for p in mine_cpu],
            models=list(dict.fromkeys(p.model for p in mine_cpu)),
        )
    ]
