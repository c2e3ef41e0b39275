"""The engine's command line for tools, prefix caching and pooling, from model files on disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from llf_inference.engine.spec import EngineSpec
from llf_inference.engine.tools import choose_tool_parser, detect_tool_parser
from llf_inference.settings import EngineOptions, InferenceSettings

MakeSettings = Callable[..., InferenceSettings]
LLAMA3_TEMPLATE = "{{ '<|start_header_id|>' }}{% if tools %}Environment: ipython{% endif %}"


@pytest.mark.parametrize(
    ("architecture", "extra", "template", "parser"),
    [
        ("Qwen2ForCausalLM", {}, "", "hermes"),
        ("Qwen3ForCausalLM", {}, "", "hermes"),
        ("Qwen3MoeForCausalLM", {}, "", "hermes"),
        ("LlamaForCausalLM", {"vocab_size": 128256}, "", "llama3_json"),
        ("LlamaForCausalLM", {}, LLAMA3_TEMPLATE, "llama3_json"),
        ("LlamaForCausalLM", {"vocab_size": 32000}, "[INST]", None),  # Llama 2: no tool syntax
        ("MistralForCausalLM", {}, "", "mistral"),
        ("MixtralForCausalLM", {}, "", "mistral"),
        ("GraniteForCausalLM", {}, "", "granite"),
        ("InternLM2ForCausalLM", {}, "", "internlm"),
        ("DeepseekV3ForCausalLM", {}, "", "deepseek_v3"),
        ("GPT2LMHeadModel", {}, "", None),
        ("LlamaForCausalLM", {}, "{% if tools %}<tool_call>{% endif %}", "hermes"),  # the tiny model's
        ("SomethingNew", {}, "[TOOL_CALLS]", "mistral"),
        ("SomethingNew", {}, "<|python_tag|>", "llama3_json"),
    ],
)
def test_the_tool_call_parser_follows_the_family(
    architecture: str, extra: dict[str, object], template: str, parser: str | None
) -> None:
    assert detect_tool_parser({"architectures": [architecture], **extra}, template) == parser


def write_model(path: Path, architecture: str, template: str | None = None, jinja: str | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"architectures": [architecture]}))
    if template is not None:
        (path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    if jinja is not None:
        (path / "chat_template.jinja").write_text(jinja)
    return path


def test_the_parser_is_read_from_the_model_directory_and_a_setting_wins(tmp_path: Path) -> None:
    qwen = write_model(tmp_path / "qwen", "Qwen2ForCausalLM")
    named = write_model(tmp_path / "named", "X", template=[{"name": "tool_use", "template": "<tool_call>"}])  # type: ignore[arg-type]
    jinja = write_model(tmp_path / "jinja", "X", template="plain", jinja="[TOOL_CALLS]")
    assert choose_tool_parser("auto", qwen) == "hermes" and choose_tool_parser(None, qwen) == "hermes"
    assert choose_tool_parser("auto", named) == "hermes"
    assert choose_tool_parser("auto", jinja) == "mistral"
    assert choose_tool_parser("pythonic", qwen) == "pythonic"
    assert choose_tool_parser("none", qwen) is None
    assert choose_tool_parser("auto", tmp_path / "missing") is None


def test_engines_start_with_prefix_caching_and_auto_tool_choice(make_settings: MakeSettings, tmp_path: Path) -> None:
    path = write_model(tmp_path / "qwen", "Qwen2ForCausalLM")
    argv = EngineSpec.from_settings(make_settings(), "o/m", str(path)).command(9000)
    assert "--enable-prefix-caching" in argv
    assert argv[argv.index("--tool-call-parser") + 1] == "hermes" and "--enable-auto-tool-choice" in argv


def test_overrides_turn_off_prefix_caching_and_tools_and_serve_a_pooling_model(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    path = write_model(tmp_path / "qwen", "Qwen2ForCausalLM")
    overrides = {
        "o/plain": EngineOptions(enable_prefix_caching=False, tool_call_parser="none"),
        "o/embed": EngineOptions(runner="pooling", convert="embed"),
    }
    settings = make_settings(model_overrides=overrides)
    plain = EngineSpec.from_settings(settings, "o/plain", str(path)).command(9000)
    assert "--no-enable-prefix-caching" in plain and "--tool-call-parser" not in plain
    embed = EngineSpec.from_settings(settings, "o/embed", str(path)).command(9000)
    assert embed[embed.index("--runner") + 1] == "pooling" and embed[embed.index("--convert") + 1] == "embed"
    assert "--enable-auto-tool-choice" not in embed  # a pooling model generates no tool calls


def test_a_pooling_engine_is_checked_with_an_embedding_before_it_is_ready(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings()
    embed = EngineSpec.from_settings(settings, "o/m", str(tmp_path), EngineOptions(runner="pooling"))
    assert embed.runner == "pooling" and embed.preflight_request("hi") == (
        "/v1/embeddings",
        {"model": "o/m", "input": "hi"},
    )
    classify = EngineSpec.from_settings(settings, "o/m", str(tmp_path), EngineOptions(convert="classify"))
    assert classify.preflight_request("hi")[0] == "/classify"
    chat = EngineSpec.from_settings(settings, "o/m", str(tmp_path))
    assert chat.runner == "generate" and chat.preflight_request("hi")[0] == "/v1/completions"


def test_the_tiny_test_model_gets_the_hermes_parser(tmp_path: Path) -> None:
    from llf_models.tinymodel import config, tokenizer_config

    write_model(tmp_path, "LlamaForCausalLM", template=tokenizer_config()["chat_template"])
    (tmp_path / "config.json").write_text(json.dumps(config()))
    assert choose_tool_parser("auto", tmp_path) == "hermes"
