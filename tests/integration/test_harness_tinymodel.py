"""The tiny model generator is deterministic and writes what a Llama snapshot holds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from llf_models import tinymodel
from safetensors import safe_open
from tokenizers import Tokenizer


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_the_same_seed_writes_byte_identical_files_and_another_seed_other_weights(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    again = tinymodel.write_tiny_model(tmp_path / "again", seed=0)
    other = tinymodel.write_tiny_model(tmp_path / "other", seed=1)
    assert digests(again) == digests(tiny_model_dir)
    assert sorted(digests(again)) == sorted(tinymodel.FILES)
    changed = {name for name, digest in digests(other).items() if digests(again)[name] != digest}
    assert changed == {"model.safetensors"}


def test_the_weights_have_llama_names_and_shapes(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is True
    with safe_open(str(tiny_model_dir / "model.safetensors"), framework="numpy") as weights:
        names = set(weights.keys())
        assert weights.get_tensor("model.embed_tokens.weight").shape == (512, 128)
        assert weights.get_tensor("model.layers.1.self_attn.k_proj.weight").shape == (64, 128)
        assert weights.get_tensor("model.layers.0.mlp.down_proj.weight").shape == (128, 256)
    assert "lm_head.weight" not in names  # tied
    assert {"model.norm.weight", "model.layers.1.post_attention_layernorm.weight"} <= names
    assert len(names) == 1 + 2 * 9 + 1
    assert (tiny_model_dir / "model.safetensors").stat().st_mode & 0o644 == 0o644


def test_the_tokenizer_has_512_entries_and_round_trips_text(tiny_model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == 512
    assert tokenizer.token_to_id("<|begin_of_text|>") == 0
    assert tokenizer.token_to_id("<|eot_id|>") == 4
    encoded = tokenizer.encode("Hello, wörld! 🙂")
    assert encoded.ids[0] == 0  # bos added like Llama 3
    assert tokenizer.decode(encoded.ids) == "Hello, wörld! 🙂"


def test_the_tokenizer_config_names_the_llama_3_special_tokens_and_template(tiny_model_dir: Path) -> None:
    """The template itself is exercised by the engine test: vLLM renders it for every chat request."""
    config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert (config["bos_token"], config["eos_token"]) == ("<|begin_of_text|>", "<|eot_id|>")
    assert config["chat_template"] == tinymodel.CHAT_TEMPLATE
    assert "add_generation_prompt" in config["chat_template"]
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [1, 4]


def test_the_command_line_writes_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tinymodel.main([str(tmp_path / "cli"), "--seed", "0"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli")
    assert (tmp_path / "cli" / "model.safetensors").is_file()
