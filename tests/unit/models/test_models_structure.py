"""Structure checks: safetensors files (read by the safetensors package), config.json, the weight estimate."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from llf_models.errors import CorruptFile
from llf_models.tinymodel import write_tiny_model
from llf_models.verify.structure import (
    DTYPE_BITS,
    architecture_warning,
    check_config,
    check_safetensors,
    context_length_of,
    summarize,
)

from tests.unit.models.builders import tensor, write_safetensors


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny"), seed=1)


def test_tiny_model_headers_give_params_dtype_and_weight_bytes(tiny: Path) -> None:
    stats = check_safetensors(tiny / "model.safetensors")
    assert stats.params > 0 and stats.dtype == "float32" and stats.nbytes == stats.params * 4
    summary = summarize({p.name: p for p in tiny.iterdir()})
    assert summary.architecture == "LlamaForCausalLM" and summary.architecture_supported
    assert summary.params == stats.params and summary.weight_bytes == stats.nbytes
    assert summary.context_length == 2048 and summary.warnings == []


def test_mixed_dtypes_report_the_dtype_holding_most_bytes(tmp_path: Path) -> None:
    header = {"a": tensor("BF16", [4], 0, 8), "b": tensor("F32", [1], 8, 12), "__metadata__": {"format": "pt"}}
    stats = check_safetensors(write_safetensors(tmp_path / "m.safetensors", header, bytes(12)))
    assert stats.params == 5 and stats.dtype == "bfloat16" and stats.nbytes == 12


@pytest.mark.parametrize(
    ("header", "data", "reason"),
    [
        ({"a": tensor("F32", [2], 0, 8)}, bytes(12), "not fully covered"),
        ({"a": tensor("F32", [2], 0, 8), "b": tensor("F32", [1], 4, 8)}, bytes(8), "invalid offset for tensor `b`"),
        ({"a": tensor("F32", [1], 4, 8)}, bytes(8), "invalid offset for tensor `a`"),
        ({"a": tensor("F32", [3], 0, 8)}, bytes(8), "invalid shape, data type, or offset"),
        ({"a": tensor("X9", [1], 0, 4)}, bytes(4), "unknown variant `X9`"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4), "integer `-1`"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, bytes(4), "invalid offset"),
        ({"a": "nope"}, b"", 'string "nope"'),
    ],
    ids=[
        "trailing-bytes",
        "overlap",
        "gap",
        "size-vs-shape",
        "unknown-dtype",
        "negative-shape",
        "reversed-offsets",
        "entry-not-an-object",
    ],
)
def test_broken_safetensors_headers_are_named(tmp_path: Path, header: dict, data: bytes, reason: str) -> None:
    path = write_safetensors(tmp_path / "w.safetensors", header, data)
    with pytest.raises(CorruptFile, match=re.escape(reason)) as info:
        check_safetensors(path, "shard-1.safetensors")
    assert info.value.path == "shard-1.safetensors"
    assert info.value.reason.startswith("not a valid safetensors file: ")


def test_truncated_or_garbage_safetensors_are_corrupt(tmp_path: Path, tiny: Path) -> None:
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02")
    with pytest.raises(CorruptFile, match="header too small"):
        check_safetensors(short)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((tiny / "model.safetensors").read_bytes()[:-100])
    with pytest.raises(CorruptFile, match="not fully covered"):
        check_safetensors(cut)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(CorruptFile, match="header too large"):
        check_safetensors(huge)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes((4).to_bytes(8, "little") + b"\xff\xfe{]")
    with pytest.raises(CorruptFile, match="invalid UTF-8 in header"):
        check_safetensors(garbage)
    array = tmp_path / "array.safetensors"
    array.write_bytes((2).to_bytes(8, "little") + b"[]")
    with pytest.raises(CorruptFile, match="invalid JSON in header"):
        check_safetensors(array)
    with pytest.raises(CorruptFile, match="cannot be read"):
        check_safetensors(tmp_path / "gone.safetensors")


def test_every_dtype_safetensors_accepts_has_a_size() -> None:
    """The weight estimate needs bits per element; a dtype missing from the table would be a guess."""
    accepted = {"BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ"}
    accepted |= {"F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64"}
    assert accepted <= set(DTYPE_BITS)


def test_sub_byte_dtypes_count_bits_not_bytes(tmp_path: Path) -> None:
    header = {"a": tensor("F4", [4], 0, 2), "b": tensor("F6_E2M3", [4], 2, 5)}
    stats = check_safetensors(write_safetensors(tmp_path / "fp4.safetensors", header, bytes(5)))
    assert (stats.params, stats.nbytes) == (8, 5)


def test_config_must_be_a_json_object(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text("[1]")
    with pytest.raises(CorruptFile, match="not a JSON object"):
        check_config(tmp_path / "c.json")
    (tmp_path / "c.json").write_text("{oops")
    with pytest.raises(CorruptFile, match=r"config\.json: not valid JSON"):
        check_config(tmp_path / "c.json")


def test_unknown_or_missing_architecture_is_a_warning_not_an_error(tmp_path: Path) -> None:
    assert architecture_warning("LlamaForCausalLM") is None
    assert "not on the list" in str(architecture_warning("FancyNewForCausalLM"))
    assert "names no architecture" in str(architecture_warning(None))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"architectures": ["FancyNewForCausalLM"], "torch_dtype": "bfloat16"}))
    summary = summarize({"config.json": config})
    assert summary.architecture_supported is False and summary.dtype == "bfloat16" and summary.params is None
    assert len(summary.warnings) == 1
    assert summarize({}).warnings == ["no config.json: not loadable by vLLM as is"]


def test_context_length_is_found_in_nested_text_configs() -> None:
    assert context_length_of({"text_config": {"max_position_embeddings": 8192}}) == 8192
    assert context_length_of({"n_positions": 1024}) == 1024
    assert context_length_of({}) is None
