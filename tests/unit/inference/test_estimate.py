"""The memory estimate: KV shape from config.json, weights + KV + overhead, its GPU and CPU shares."""

from __future__ import annotations

from llf_inference.devices import GIB
from llf_inference.estimate import KvShape, MemoryEstimate, dtype_bytes, estimate_memory

BIG = MemoryEstimate(weight_bytes=60 * GIB, kv_cache_bytes=4 * GIB, overhead_bytes=GIB)  # 33 GiB per GPU at tp 2
TINY = MemoryEstimate(weight_bytes=100 << 20, kv_cache_bytes=GIB, overhead_bytes=GIB)  # 2.1 GiB of RAM
QWEN_05B = {"num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "hidden_size": 896}


def test_kv_shape_comes_from_the_config_head_dim_derived_from_hidden_size() -> None:
    assert KvShape.from_config(QWEN_05B) == KvShape(layers=24, kv_heads=2, head_dim=64)
    assert KvShape.from_config({**QWEN_05B, "head_dim": 128}) == KvShape(layers=24, kv_heads=2, head_dim=128)


def test_kv_shape_without_kv_heads_is_multi_head_attention() -> None:
    shape = KvShape.from_config({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64})

    assert shape == KvShape(layers=2, kv_heads=4, head_dim=16)


def test_kv_shape_reads_a_multimodal_text_config() -> None:
    assert KvShape.from_config({"architectures": ["X"], "text_config": QWEN_05B}) == KvShape(24, 2, 64)


def test_kv_shape_is_none_when_a_number_is_missing() -> None:
    assert KvShape.from_config({"num_hidden_layers": 24}) is None
    assert KvShape.from_config({}) is None


def test_estimate_is_weights_plus_kv_for_max_model_len_plus_overhead() -> None:
    shape = KvShape(layers=24, kv_heads=2, head_dim=64)

    memory = estimate_memory(988_000_000, kv_shape=shape, max_model_len=32768, overhead_bytes=GIB)

    assert shape.bytes_per_token() == 24 * 2 * 64 * 2 * 2 == 12288
    assert memory == MemoryEstimate(weight_bytes=988_000_000, kv_cache_bytes=32768 * 12288, overhead_bytes=GIB)
    assert memory.total_bytes == 988_000_000 + 402_653_184 + GIB


def test_estimate_without_config_or_max_model_len_uses_the_budget() -> None:
    assert estimate_memory(GIB, kv_budget_bytes=3 * GIB).kv_cache_bytes == 3 * GIB
    assert estimate_memory(GIB, kv_shape=KvShape(2, 2, 2), kv_budget_bytes=3 * GIB).kv_cache_bytes == 3 * GIB


def test_kv_dtype_bytes() -> None:
    assert [dtype_bytes(d) for d in ("auto", None, "bfloat16", "float16", "float32", "torch.float32", "fp8")] == [
        2,
        2,
        2,
        2,
        4,
        4,
        1,
    ]


def test_tensor_parallel_splits_weights_and_kv_but_every_gpu_pays_the_overhead() -> None:
    assert BIG.per_gpu(1) == 65 * GIB
    assert BIG.per_gpu(2) == 33 * GIB
    assert BIG.per_gpu(4) == 17 * GIB


def test_cpu_kv_space_is_whole_gib_of_at_least_one() -> None:
    assert TINY.kv_cache_gib() == 1
    assert MemoryEstimate(0, GIB + 1, 0).kv_cache_gib() == 2
    assert MemoryEstimate(0, 1000, 0).kv_cache_gib() == 1
    assert MemoryEstimate(0, 1000, 0).kv_cache_gib(4) == 4
    assert TINY.cpu_bytes() == (100 << 20) + 2 * GIB
    assert TINY.cpu_bytes(3) == (100 << 20) + 4 * GIB
