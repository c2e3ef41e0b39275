"""What one replica of a model needs in memory: weights + KV cache + overhead, in bytes.

Placement (``placement.py``) decides *where* a replica runs; this module says *how much* it
needs there, from facts about the model (its weight bytes, its ``config.json``) and the settings,
without looking at any device. ``placer.py`` builds the estimate for the supervisor and hands it
to ``place()``.

The rule (the README's "Devices and placement" says the same for users): KV = ``max_model_len``
x layers x KV heads x head dim x 2 (K and V) x dtype bytes when the model's ``config.json`` is
known, else the configured budget. On GPU, tensor parallelism splits weights and KV across the
group; each GPU also pays the overhead (its own CUDA context, activations, graphs). On CPU the
KV cache is handed to the engine in whole GiB (``VLLM_CPU_KVCACHE_SPACE``), so the RAM counted
is rounded up to what the engine will take.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llf_inference.devices import GIB

DEFAULT_KV_BUDGET_BYTES = GIB
DEFAULT_GPU_OVERHEAD_BYTES = GIB  # CUDA context + activations + CUDA graphs, per GPU
DEFAULT_CPU_OVERHEAD_BYTES = GIB  # the engine process itself: torch, tokenizer, buffers


@dataclass(frozen=True)
class KvShape:
    """The part of a model's ``config.json`` that sizes its KV cache."""

    layers: int
    kv_heads: int
    head_dim: int

    def bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return self.layers * self.kv_heads * self.head_dim * 2 * dtype_bytes

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> KvShape | None:
        """From a Hugging Face config (or its ``text_config``); ``None`` when a number is missing."""
        text = config.get("text_config")
        source: Mapping[str, Any] = text if isinstance(text, Mapping) and "num_hidden_layers" in text else config
        layers, heads, hidden = (
            _positive(source.get(k)) for k in ("num_hidden_layers", "num_attention_heads", "hidden_size")
        )
        kv_heads = _positive(source.get("num_key_value_heads", heads))
        head_dim = _positive(source.get("head_dim")) or (hidden // heads if hidden and heads else None)
        if not (layers and kv_heads and head_dim):
            return None
        return cls(layers=layers, kv_heads=kv_heads, head_dim=head_dim)


def _positive(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def dtype_bytes(dtype: str | None) -> int:
    """Bytes per element of a KV-cache dtype name; 2 (bf16/fp16) when unknown or ``auto``."""
    table = {"float32": 4, "fp32": 4, "float": 4, "fp8": 1, "float8": 1, "int8": 1}
    return table.get((dtype or "").lower().removeprefix("torch."), 2)


@dataclass(frozen=True)
class MemoryEstimate:
    """What one replica needs, in bytes, before it is split over a tensor-parallel group."""

    weight_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.kv_cache_bytes + self.overhead_bytes

    def per_gpu(self, tensor_parallel_size: int = 1) -> int:
        """Bytes on each GPU of a group: weights and KV split, overhead paid by every GPU."""
        return -(-(self.weight_bytes + self.kv_cache_bytes) // tensor_parallel_size) + self.overhead_bytes

    def kv_cache_gib(self, floor: int = 1) -> int:
        """``VLLM_CPU_KVCACHE_SPACE``: the KV cache in whole GiB, at least ``floor``."""
        return max(floor, 1, -(-self.kv_cache_bytes // GIB))

    def cpu_bytes(self, kv_floor_gib: int = 1) -> int:
        """RAM of a CPU replica: the KV space is rounded up to what the engine is told to take."""
        return self.weight_bytes + self.kv_cache_gib(kv_floor_gib) * GIB + self.overhead_bytes


def estimate_memory(
    weight_bytes: int,
    *,
    kv_shape: KvShape | None = None,
    max_model_len: int | None = None,
    kv_dtype_bytes: int = 2,
    kv_budget_bytes: int = DEFAULT_KV_BUDGET_BYTES,
    overhead_bytes: int = DEFAULT_GPU_OVERHEAD_BYTES,
) -> MemoryEstimate:
    """Weights (``ModelFacts.weight_bytes``) + KV for one ``max_model_len`` sequence, else the budget, + overhead.

    One full-length sequence is what vLLM refuses to start without; give more concurrency with
    ``min_gpu_share`` (the ``gpu_memory_utilization`` setting) or a larger ``max_model_len``.
    Where the arguments come from: ``kv_shape`` = ``KvShape.from_config`` of the model's
    ``config.json``; ``max_model_len`` = the setting, else ``ModelFacts.context_length``;
    ``kv_dtype_bytes`` = ``dtype_bytes`` of the ``dtype`` setting, else of ``ModelFacts.dtype``;
    ``overhead_bytes`` = ``DEFAULT_CPU_OVERHEAD_BYTES`` for a CPU replica.
    """
    if kv_shape is not None and max_model_len:
        kv = max_model_len * kv_shape.bytes_per_token(kv_dtype_bytes)
    else:
        kv = kv_budget_bytes
    return MemoryEstimate(weight_bytes=max(0, weight_bytes), kv_cache_bytes=kv, overhead_bytes=overhead_bytes)
