"""Placement: replicas on GPUs (fake NVML, 1-8 GPUs of mixed memory) or CPU cores, the ledger, refusals."""

from __future__ import annotations

import pytest
from llf_common.errors import BadRequest, LLFError
from llf_inference.allocation import Allocation, Placement, baseline, core_ranges
from llf_inference.devices import GIB, CpuDevice, Inventory, discover
from llf_inference.estimate import MemoryEstimate
from llf_inference.placement import DoesNotFit, PlacementRequest, gib, place

from tests.support.nvml import FakeNvml

CPU2 = CpuDevice(cores=(0, 1), ram_total_bytes=16 * GIB, ram_available_bytes=12 * GIB)
CPU8 = CpuDevice(cores=tuple(range(8)), ram_total_bytes=64 * GIB, ram_available_bytes=60 * GIB)
MID = MemoryEstimate(weight_bytes=10 * GIB, kv_cache_bytes=2 * GIB, overhead_bytes=GIB)  # 13 GiB on one GPU
SMALL = MemoryEstimate(weight_bytes=3 * GIB, kv_cache_bytes=GIB, overhead_bytes=GIB)  # 5 GiB
BIG = MemoryEstimate(weight_bytes=60 * GIB, kv_cache_bytes=4 * GIB, overhead_bytes=GIB)  # 33 GiB per GPU at tp 2
TINY = MemoryEstimate(weight_bytes=100 << 20, kv_cache_bytes=GIB, overhead_bytes=GIB)  # 2.1 GiB of RAM


def gpus(*totals: float, free: dict[int, float] | None = None) -> Inventory:
    return discover(FakeNvml.of(*totals, free_gib=free), cpu=CPU8)


def cpu(device: CpuDevice = CPU2) -> Inventory:
    return Inventory(gpus=(), cpu=device, nvml_error="NVML: NVML Shared Library Not Found")


def placed(
    inventory: Inventory, ledger: Allocation, model: str, memory: MemoryEstimate, **kw: object
) -> list[Placement]:
    """Place and reserve, as the supervisor does."""
    result = place(inventory, ledger, PlacementRequest(model=model, memory=memory, **kw))  # type: ignore[arg-type]
    ledger.reserve(*result)
    return list(result)


# ---------------------------------------------------------------- GPU
def test_one_replica_on_one_gpu_gets_its_share_and_its_own_visible_device() -> None:
    ledger = Allocation()

    [replica] = placed(gpus(24), ledger, "test/mid", MID)

    assert replica.replica_id == "test/mid#0"
    assert (replica.device, replica.gpus, replica.gpu_memory_utilization) == ("cuda", (0,), 0.542)
    assert replica.gpu_reserved_bytes == (-(-542 * 24 * GIB // 1000),)
    assert replica.env() == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "0"}
    assert replica.engine_options() == {
        "gpu_memory_utilization": 0.542,
        "tensor_parallel_size": 1,
        "cuda_visible_devices": "0",
    }


@pytest.mark.parametrize(
    "totals",
    [(24,), (24, 48), (24, 24, 48, 80), (16, 24, 24, 40, 48, 80, 80, 96)],
    ids=["1gpu", "2gpus", "4gpus", "8gpus"],
)
def test_auto_puts_one_replica_on_every_gpu_it_fits(totals: tuple[int, ...]) -> None:
    replicas = placed(gpus(*totals), Allocation(), "test/mid", MID, replicas="auto")

    expected = [str(i) for i, total in enumerate(totals) if total >= 13]
    assert sorted(r.cuda_visible_devices or "" for r in replicas) == sorted(expected)
    assert all(r.tensor_parallel_size == 1 for r in replicas)
    assert [r.replica_id for r in replicas] == [f"test/mid#{k}" for k in range(len(expected))]


def test_auto_fills_the_tightest_gpus_first() -> None:
    replicas = placed(gpus(80, 24, 48, 24), Allocation(), "test/mid", MID, replicas="auto")

    assert [r.cuda_visible_devices for r in replicas] == ["1", "3", "2", "0"]
    assert [r.gpu_memory_utilization for r in replicas] == [0.542, 0.542, 0.271, 0.163]


def test_explicit_replicas_go_to_different_gpus_before_sharing_one() -> None:
    replicas = placed(gpus(80, 80), Allocation(), "test/mid", MID, replicas=3)

    assert [r.cuda_visible_devices for r in replicas] == ["0", "1", "0"]
    assert [r.gpu_memory_utilization for r in replicas] == [0.163, 0.163, 0.163]


def test_small_models_share_a_gpu_with_shares_that_add_up() -> None:
    inventory, ledger = gpus(24, 24), Allocation()

    a = placed(inventory, ledger, "test/a", SMALL)
    b = placed(inventory, ledger, "test/b", SMALL)
    c = placed(inventory, ledger, "test/c", MID)

    assert [p.cuda_visible_devices for p in a + b + c] == ["0", "0", "0"]
    assert [p.gpu_memory_utilization for p in a + b + c] == [0.209, 0.209, 0.542]
    assert sum(p.gpu_memory_utilization or 0 for p in ledger.on_gpu(0)) <= 1
    assert ledger.gpu_reserved(1) == 0


def test_a_configured_share_is_a_floor_and_never_given_twice_past_the_gpu() -> None:
    inventory, ledger = gpus(24), Allocation()
    [a] = placed(inventory, ledger, "test/a", SMALL, min_gpu_share=0.9)

    with pytest.raises(DoesNotFit) as refused:
        placed(inventory, ledger, "test/b", SMALL, min_gpu_share=0.9)

    assert a.gpu_memory_utilization == 0.9
    assert refused.value.detail == "test/b needs 1 GPU with ≥ 5 GiB; free: GPU0 2.3 GiB"


def test_tensor_parallel_group_prefers_same_memory_gpus() -> None:
    [replica] = placed(gpus(48, 80, 80), Allocation(), "test/big", BIG, tensor_parallel_size=2)

    assert replica.gpus == (1, 2)
    assert replica.env()["CUDA_VISIBLE_DEVICES"] == "1,2"
    assert replica.engine_options()["tensor_parallel_size"] == 2
    assert replica.gpu_memory_utilization == 0.413  # 33 GiB of 80


def test_tensor_parallel_groups_on_eight_mixed_gpus() -> None:
    replicas = placed(
        gpus(24, 24, 48, 48, 80, 80, 80, 80), Allocation(), "test/big", BIG, tensor_parallel_size=2, replicas="auto"
    )

    assert [r.cuda_visible_devices for r in replicas] == ["2,3", "4,5", "6,7"]
    assert [r.gpu_memory_utilization for r in replicas] == [0.688, 0.413, 0.413]


def test_tensor_parallel_four_ways_on_four_gpus() -> None:
    [replica] = placed(gpus(24, 24, 24, 24), Allocation(), "test/big", BIG, tensor_parallel_size=4)

    assert replica.cuda_visible_devices == "0,1,2,3"
    assert replica.gpu_memory_utilization == 0.709  # 17 GiB of 24 on each


def test_a_mixed_group_is_sized_on_its_smallest_gpu_and_holds_that_share_of_each() -> None:
    [replica] = placed(gpus(48, 80), Allocation(), "test/big", BIG, tensor_parallel_size=2)

    assert (replica.gpus, replica.gpu_memory_utilization) == ((0, 1), 0.688)
    assert replica.gpu_reserved_bytes == (-(-688 * 48 * GIB // 1000), -(-688 * 80 * GIB // 1000))


def test_tensor_parallel_refusal_names_what_it_needs_and_what_is_free() -> None:
    big = MemoryEstimate(weight_bytes=70 * GIB, kv_cache_bytes=4 * GIB, overhead_bytes=GIB)

    with pytest.raises(DoesNotFit) as refused:
        place(gpus(40, 40, free={0: 0, 1: 22}), Allocation(), PlacementRequest("test/big", big, tensor_parallel_size=2))

    assert refused.value.detail == (
        "test/big needs 2 GPUs with ≥ 38 GiB each for tensor_parallel_size 2; free: GPU1 22 GiB"
    )
    assert refused.value.status_code == 507
    assert isinstance(refused.value, LLFError)
    assert "\n" not in refused.value.detail


def test_explicit_replicas_are_all_placed_or_none() -> None:
    ledger = Allocation()

    with pytest.raises(DoesNotFit) as refused:
        placed(gpus(24, 24), ledger, "test/mid", MID, replicas=3)

    assert refused.value.detail == (
        "test/mid: 2 of 3 replicas fit; each needs 1 GPU with ≥ 13 GiB; free: GPU0 24 GiB, GPU1 24 GiB"
    )
    assert len(ledger) == 0


def test_auto_refuses_when_every_gpu_already_has_a_replica_of_the_model() -> None:
    inventory, ledger = gpus(80), Allocation()
    placed(inventory, ledger, "test/mid", MID)

    with pytest.raises(DoesNotFit) as refused:
        placed(inventory, ledger, "test/mid", MID, replicas="auto")

    assert refused.value.detail == (
        "test/mid needs 1 GPU with ≥ 13 GiB; free: GPU0 66.9 GiB (auto places one replica of a model per GPU)"
    )


def test_gpus_option_restricts_the_devices() -> None:
    inventory = gpus(80, 80, 24, 24)

    replicas = placed(inventory, Allocation(), "test/mid", MID, replicas="auto", gpus=(2, 3))
    with pytest.raises(DoesNotFit) as refused:
        placed(inventory, Allocation(), "test/big", BIG, gpus=(2, 3))
    with pytest.raises(BadRequest, match="no GPU 9"):
        placed(inventory, Allocation(), "test/mid", MID, gpus=(9,))

    assert [r.cuda_visible_devices for r in replicas] == ["2", "3"]
    assert refused.value.detail == "test/big needs 1 GPU with ≥ 65 GiB; free: GPU2 24 GiB, GPU3 24 GiB"


def test_memory_other_processes_use_is_not_free() -> None:
    [replica] = placed(gpus(24, 24, free={0: 12}), Allocation(), "test/mid", MID)

    assert replica.cuda_visible_devices == "1"


def test_release_makes_room_for_the_next_placement() -> None:
    inventory, ledger = gpus(24), Allocation()
    [a] = placed(inventory, ledger, "test/a", MID)
    with pytest.raises(DoesNotFit, match=r"^test/b needs 1 GPU with ≥ 13 GiB; free: GPU0 10.9 GiB$"):
        placed(inventory, ledger, "test/b", MID)

    assert ledger.release(a.replica_id) == a
    [b] = placed(inventory, ledger, "test/b", MID)

    assert (b.cuda_visible_devices, b.gpu_memory_utilization) == ("0", 0.542)
    assert ledger.placements == (b,)
    assert ledger.release("nobody") is None


def test_place_reads_the_ledger_and_never_changes_it() -> None:
    ledger = Allocation()

    first = place(gpus(24), ledger, PlacementRequest("test/mid", MID))
    again = place(gpus(24), ledger, PlacementRequest("test/mid", MID))

    assert first == again
    assert len(ledger) == 0


def test_the_ledger_refuses_a_replica_id_twice() -> None:
    ledger = Allocation()
    [a] = placed(gpus(80), ledger, "test/a", SMALL)

    with pytest.raises(ValueError, match="already placed: test/a#0"):
        ledger.reserve(a)
    assert "test/a#0" in ledger
    assert ledger.get("test/a#0") == a


def test_default_replica_ids_skip_the_ones_held_and_a_caller_may_name_them() -> None:
    inventory, ledger = gpus(80, 80), Allocation()
    placed(inventory, ledger, "test/mid", MID)

    [second] = place(inventory, ledger, PlacementRequest("test/mid", MID))
    [named] = place(inventory, ledger, PlacementRequest("test/mid", MID), new_id=lambda k: f"r{k + 7}")

    assert (second.replica_id, named.replica_id) == ("test/mid#1", "r7")


def test_baseline_adds_back_what_our_own_engines_hold() -> None:
    ledger = Allocation()
    placed(gpus(24), ledger, "test/mid", MID)
    rediscovered = gpus(24, free={0: 11})

    assert baseline(rediscovered, ledger).gpus[0].free_bytes == 24 * GIB


def test_cuda_requested_on_a_machine_without_gpus_says_why() -> None:
    with pytest.raises(DoesNotFit) as refused:
        place(cpu(), Allocation(), PlacementRequest("test/mid", MID, device="cuda"))

    assert refused.value.detail == (
        "test/mid needs 1 GPU with ≥ 13 GiB; free: none (NVML: NVML Shared Library Not Found)"
    )


@pytest.mark.parametrize(
    "request_",
    [
        PlacementRequest("test/x", MID, replicas=0),
        PlacementRequest("test/x", MID, tensor_parallel_size=0),
        PlacementRequest("test/x", MID, cores_per_replica=0),
    ],
)
def test_impossible_counts_are_a_value_error(request_: PlacementRequest) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        place(gpus(24), Allocation(), request_)


# ---------------------------------------------------------------- CPU
def test_two_models_on_two_cores_each_get_a_core_of_its_own() -> None:
    inventory, ledger = cpu(), Allocation()

    [a] = placed(inventory, ledger, "test/a", TINY)
    [b] = placed(inventory, ledger, "test/b", TINY)

    assert (a.device, a.cores, b.cores) == ("cpu", (1,), (0,))
    assert a.env() == {"VLLM_CPU_OMP_THREADS_BIND": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    assert b.env() == {"VLLM_CPU_OMP_THREADS_BIND": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    assert a.engine_options() == {"cpu_kvcache_space": 1}


def test_a_third_model_on_two_busy_cores_is_refused_naming_the_holders() -> None:
    inventory, ledger = cpu(), Allocation()
    placed(inventory, ledger, "test/a", TINY)
    placed(inventory, ledger, "test/b", TINY)

    with pytest.raises(DoesNotFit) as refused:
        placed(inventory, ledger, "test/c", TINY)

    assert refused.value.detail == (
        "test/c needs 2.1 GiB RAM and 1 free core; free: 0 cores, 7.8 GiB RAM "
        "(cores 0,1 hold replicas of test/b, test/a)"
    )


def test_auto_on_two_cores_leaves_core_0_to_the_gateway() -> None:
    inventory, ledger = cpu(), Allocation()

    [a] = placed(inventory, ledger, "test/a", TINY, replicas="auto")
    with pytest.raises(DoesNotFit) as refused:
        placed(inventory, ledger, "test/b", TINY, replicas="auto")
    [b] = placed(inventory, ledger, "test/b", TINY)

    assert (a.omp_threads_bind, b.omp_threads_bind) == ("1", "0")
    assert refused.value.detail == (
        "test/b needs 2.1 GiB RAM and 1 free core; free: 1 core (0), 9.9 GiB RAM "
        "(core 1 holds replicas of test/a; auto keeps core 0 for the gateway)"
    )


def test_auto_on_eight_cores_binds_core_pairs_from_the_top() -> None:
    replicas = placed(cpu(CPU8), Allocation(), "test/a", TINY, replicas="auto", cores_per_replica=2)

    assert [r.omp_threads_bind for r in replicas] == ["6-7", "4-5", "2-3"]


def test_explicit_replicas_on_eight_cores_may_use_every_core() -> None:
    replicas = placed(cpu(CPU8), Allocation(), "test/a", TINY, replicas=8)

    assert [r.omp_threads_bind for r in replicas] == ["7", "6", "5", "4", "3", "2", "1", "0"]
    assert sum(r.ram_bytes for r in replicas) == 8 * TINY.cpu_bytes()


def test_cores_left_between_replicas_are_bound_as_a_list() -> None:
    inventory, ledger = cpu(CPU8), Allocation()
    placed(inventory, ledger, "test/a", TINY, replicas=1, cores_per_replica=1)  # core 7
    placed(inventory, ledger, "test/b", TINY, replicas=1, cores_per_replica=2)  # cores 5-6
    ledger.release("test/a#0")

    [c] = placed(inventory, ledger, "test/c", TINY, cores_per_replica=2)

    assert c.omp_threads_bind == "4,7"


def test_ram_limits_cpu_replicas() -> None:
    fat = MemoryEstimate(weight_bytes=20 * GIB, kv_cache_bytes=4 * GIB, overhead_bytes=GIB)

    auto = placed(cpu(CPU8), Allocation(), "test/fat", fat, replicas="auto")
    with pytest.raises(DoesNotFit) as refused:
        placed(cpu(CPU8), Allocation(), "test/fat", fat, replicas=3)

    assert len(auto) == 2
    assert refused.value.detail == (
        "3 replicas of test/fat need 75 GiB RAM and 3 free cores; free: 8 cores (0-7), 60 GiB RAM"
    )


def test_auto_on_one_core_is_refused_and_an_explicit_replica_takes_it() -> None:
    one = CpuDevice(cores=(3,), ram_total_bytes=8 * GIB, ram_available_bytes=8 * GIB)

    with pytest.raises(DoesNotFit, match=r"auto keeps core 3 for the gateway\)$"):
        placed(cpu(one), Allocation(), "test/a", TINY, replicas="auto")
    [a] = placed(cpu(one), Allocation(), "test/a", TINY)

    assert a.cores == (3,)


def test_the_configured_cpu_kv_space_is_a_floor() -> None:
    [replica] = placed(cpu(), Allocation(), "test/a", TINY, min_cpu_kvcache_gib=4)

    assert replica.env()["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert replica.ram_bytes == (100 << 20) + 5 * GIB


def test_gpus_option_on_a_cpu_machine_is_a_bad_request() -> None:
    with pytest.raises(BadRequest) as refused:
        place(cpu(), Allocation(), PlacementRequest("test/a", TINY, gpus=(0, 1)))

    assert refused.value.detail == "--gpus 0,1: engines run on the CPU here; NVML: NVML Shared Library Not Found"
    assert refused.value.status_code == 400


def test_cpu_placement_on_a_gpu_machine_when_asked() -> None:
    [replica] = placed(gpus(24), Allocation(), "test/a", TINY, device="cpu")

    assert (replica.device, replica.cores, replica.gpus) == ("cpu", (7,), ())


# ---------------------------------------------------------------- formatting
@pytest.mark.parametrize(
    ("cores", "text"), [((0,), "0"), ((2, 3), "2-3"), ((0, 2), "0,2"), ((5, 0, 2, 3, 4), "0,2-5"), ((), "")]
)
def test_core_ranges(cores: tuple[int, ...], text: str) -> None:
    assert core_ranges(cores) == text


def test_gib_rounds_needs_up_and_free_memory_down() -> None:
    assert (gib(38 * GIB), gib(38 * GIB, up=True)) == ("38", "38")
    assert (gib(int(3.05 * GIB)), gib(int(3.05 * GIB), up=True)) == ("3", "3.1")
