"""The device inventory: GPUs from (fake) NVML, else CPU cores and RAM; never an error for "no GPU"."""

from __future__ import annotations

import os

import pytest
from llf_common.errors import BadRequest
from llf_inference import devices
from llf_inference.devices import GIB, CpuDevice, GpuDevice, Inventory, discover, parse_gpus

from tests.support.nvml import FakeNvml

CPU = CpuDevice(cores=(0, 1), ram_total_bytes=16 * GIB, ram_available_bytes=12 * GIB)


def test_discover_lists_every_gpu_with_index_name_uuid_and_memory() -> None:
    nvml = FakeNvml.of(80, 24, free_gib={1: 10})

    inventory = discover(nvml, cpu=CPU)

    assert inventory.device == "cuda"
    assert inventory.nvml_error is None
    assert inventory.gpus == (
        GpuDevice(0, "NVIDIA Fake 80GB", "GPU-00000000-0000-0000-0000-000000000000", 80 * GIB, 80 * GIB),
        GpuDevice(1, "NVIDIA Fake 24GB", "GPU-00000000-0000-0000-0000-000000000001", 24 * GIB, 10 * GIB),
    )
    assert inventory.cpu == CPU
    assert (nvml.inits, nvml.shutdowns) == (1, 1)


@pytest.mark.parametrize("count", [1, 2, 4, 8])
def test_discover_keeps_nvml_index_order(count: int) -> None:
    inventory = discover(FakeNvml.of(*[24 + 8 * i for i in range(count)]), cpu=CPU)

    assert [g.index for g in inventory.gpus] == list(range(count))
    assert [g.label for g in inventory.gpus] == [f"GPU{i}" for i in range(count)]


def test_a_failing_nvml_means_cpu_with_the_reason() -> None:
    nvml = FakeNvml.of(24)
    nvml.fail_init = "NVML Shared Library Not Found"

    inventory = discover(nvml, cpu=CPU)

    assert inventory.gpus == ()
    assert inventory.device == "cpu"
    assert inventory.nvml_error == "NVML: NVML Shared Library Not Found"


def test_nvml_with_no_gpu_means_cpu() -> None:
    inventory = discover(FakeNvml.parse(""), cpu=CPU)

    assert (inventory.device, inventory.nvml_error) == ("cpu", "NVML lists no GPU")


def test_without_nvidia_ml_py_the_inventory_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(devices.importlib, "import_module", missing)

    inventory = discover(cpu=CPU)

    assert (inventory.gpus, inventory.nvml_error) == ((), "nvidia-ml-py is not installed")


def test_the_real_nvml_on_this_machine_never_raises() -> None:
    inventory = discover()

    assert inventory.cpu.cores == tuple(sorted(os.sched_getaffinity(0)))
    assert 0 < inventory.cpu.ram_available_bytes <= inventory.cpu.ram_total_bytes
    assert inventory.device == ("cuda" if inventory.gpus else "cpu")


def test_bytes_names_from_old_nvml_releases_are_decoded() -> None:
    class OldNvml(FakeNvml):
        def nvmlDeviceGetName(self, handle: object) -> bytes:  # type: ignore[override]
            return super().nvmlDeviceGetName(handle).encode()

    old = OldNvml(FakeNvml.of(16).gpus)

    assert discover(old, cpu=CPU).gpus[0].name == "NVIDIA Fake 16GB"


def test_restricted_keeps_only_the_named_gpus() -> None:
    inventory = discover(FakeNvml.of(24, 24, 48, 48), cpu=CPU)

    assert [g.index for g in inventory.restricted((3, 1)).gpus] == [1, 3]
    assert inventory.restricted(None) is inventory
    with pytest.raises(BadRequest, match=r"^--gpus: no GPU 7 on this machine \(GPUs: 0,1,2,3\)$"):
        inventory.restricted((0, 7))


def test_gpu_lookup_by_index() -> None:
    inventory = Inventory(gpus=(GpuDevice(2, "x", "u", GIB, GIB),), cpu=CPU)

    assert inventory.gpu(2).uuid == "u"
    with pytest.raises(KeyError):
        inventory.gpu(0)


@pytest.mark.parametrize(
    ("text", "expected"), [(None, None), ("", None), ("all", None), ("0", (0,)), ("0,1", (0, 1)), ("3, 1", (3, 1))]
)
def test_parse_gpus(text: str | None, expected: tuple[int, ...] | None) -> None:
    assert parse_gpus(text) == expected


@pytest.mark.parametrize("text", ["a", "0,,1", "-1", "0;1"])
def test_parse_gpus_refuses_what_is_not_a_list_of_indices(text: str) -> None:
    with pytest.raises(BadRequest, match="--gpus takes GPU indices like 0,1"):
        parse_gpus(text)


def test_fake_nvml_spec_string_describes_a_machine() -> None:
    nvml = FakeNvml.parse("80,80,24:12")

    inventory = discover(nvml, cpu=CPU)

    assert [(g.total_bytes // GIB, g.free_bytes // GIB) for g in inventory.gpus] == [(80, 80), (80, 80), (24, 12)]
