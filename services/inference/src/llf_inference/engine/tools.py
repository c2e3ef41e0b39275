"""Which vLLM tool-call parser fits a model, so ``tools`` work without any flag (as in Ollama).

vLLM answers a request with ``tools`` and ``tool_choice: "auto"`` only when the engine was
started with ``--enable-auto-tool-choice`` and a ``--tool-call-parser`` that reads the model's
own tool-call syntax. The syntax is the chat template's: a template that emits
``<tool_call>`` is Hermes-style (Qwen2.5/3, NousHermes and the tiny test model), one with
``[TOOL_CALLS]`` is Mistral's, one with ``<|python_tag|>`` is Llama 3.1+'s JSON. Without a
telling template, the architecture decides (``FAMILIES``). A model matching nothing gets no
parser: named ``tool_choice`` still works (guided decoding), ``"auto"`` is the engine's 400.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEMPLATE_MARKERS: tuple[tuple[str, str], ...] = (
    ("<tool_call>", "hermes"),
    ("[TOOL_CALLS]", "mistral"),
    ("<|python_tag|>", "llama3_json"),
)
"""Chat-template text → parser; the first marker found wins."""

FAMILIES: dict[str, str] = {
    "Qwen2ForCausalLM": "hermes",
    "Qwen2MoeForCausalLM": "hermes",
    "Qwen3ForCausalLM": "hermes",
    "Qwen3MoeForCausalLM": "hermes",
    "MistralForCausalLM": "mistral",
    "MixtralForCausalLM": "mistral",
    "Mistral3ForConditionalGeneration": "mistral",
    "Llama4ForConditionalGeneration": "llama4_pythonic",
    "GraniteForCausalLM": "granite",
    "InternLM2ForCausalLM": "internlm",
    "DeepseekV3ForCausalLM": "deepseek_v3",
    "JambaForCausalLM": "jamba",
    "Glm4MoeForCausalLM": "glm45",
}
"""Architecture (``config.json``) → parser, for templates that do not say."""

DISABLED = ("none", "off", "false", "")


def choose_tool_parser(setting: str | None, model_dir: str | Path) -> str | None:
    """The parser for the model in ``model_dir``: ``setting`` unless it is ``auto``/unset; ``none`` turns it off."""
    if setting is not None and setting.lower() in DISABLED:
        return None
    if setting is not None and setting != "auto":
        return setting
    return detect_tool_parser(_read_json(Path(model_dir) / "config.json"), _chat_template(Path(model_dir)))


def detect_tool_parser(config: dict[str, Any], template: str) -> str | None:
    """The parser a model's config and chat template call for, or ``None``."""
    for marker, parser in TEMPLATE_MARKERS:
        if marker in template:
            return parser
    architectures = config.get("architectures") or []
    for architecture in architectures if isinstance(architectures, list) else []:
        if architecture in FAMILIES:
            return FAMILIES[architecture]
        if architecture == "LlamaForCausalLM" and _is_llama3(config, template):
            return "llama3_json"
    return None


def _is_llama3(config: dict[str, Any], template: str) -> bool:
    """Llama 3.x: its 128k vocabulary or its header tokens (Llama 2 shares the architecture, not these)."""
    return config.get("vocab_size") in (128256, 128257) or "Environment: ipython" in template


def _chat_template(model_dir: Path) -> str:
    """The chat template as the engine will find it: ``chat_template.jinja``, else the tokenizer config's."""
    jinja = model_dir / "chat_template.jinja"
    try:
        return jinja.read_text(encoding="utf-8")
    except OSError:
        pass
    template = _read_json(model_dir / "tokenizer_config.json").get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
        return "\n".join(str(t.get("template", "")) for t in template if isinstance(t, dict))
    return template if isinstance(template, str) else ""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
