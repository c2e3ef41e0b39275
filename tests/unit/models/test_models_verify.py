"""Structural checks of safetensors and config.json, the weight estimate, and hashing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from llf_models.errors import CorruptFile
from llf_models.tinymodel import write_tiny_model
from llf_models.verify import (
    Hasher,
    architecture_warning,
    check_config,
    check_safetensors,
    compare_files,
    context_length_of,
    hash_file,
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
        ({"a": tensor("F32", [2], 0, 8)}, bytes(12), "data section has 12"),
        ({"a": tensor("F32", [2], 0, 8), "b": tensor("F32", [1], 4, 8)}, bytes(8), "overlaps"),
        ({"a": tensor("F32", [1], 4, 8)}, bytes(8), "gap at byte 0"),
        ({"a": tensor("F32", [3], 0, 8)}, bytes(8), "want 12"),
        ({"a": tensor("X9", [1], 0, 4)}, bytes(4), "unknown dtype"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4), "bad shape"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, bytes(4), "bad data_offsets"),
        ({"a": "nope"}, b"", "not an object"),
    ],
)
def test_broken_safetensors_headers_are_named(tmp_path: Path, header: dict, data: bytes, reason: str) -> None:
    path = write_safetensors(tmp_path / "w.safetensors", header, data)
    with pytest.raises(CorruptFile, match=reason) as info:
        check_safetensors(path, "shard-1.safetensors")
    assert info.value.path == "shard-1.safetensors"


def test_truncated_or_garbage_safetensors_are_corrupt(tmp_path: Path, tiny: Path) -> None:
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02")
    with pytest.raises(CorruptFile, match="too short"):
        check_safetensors(short)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((tiny / "model.safetensors").read_bytes()[:-100])
    with pytest.raises(CorruptFile, match="data section"):
        check_safetensors(cut)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(CorruptFile, match="does not fit"):
        check_safetensors(huge)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes((4).to_bytes(8, "little") + b"\xff\xfe{]")
    with pytest.raises(CorruptFile, match="not valid JSON"):
        check_safetensors(garbage)
    array = tmp_path / "array.safetensors"
    array.write_bytes((2).to_bytes(8, "little") + b"[]")
    with pytest.raises(CorruptFile, match="not a JSON object"):
        check_safetensors(array)


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


def test_git_blob_sha1_matches_git_hash_object() -> None:
    hasher = Hasher(size=0)
    assert hasher.git_sha1 is not None and hasher.git_sha1.hexdigest() == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    hasher = Hasher(size=6)
    hasher.update(b"hello\n")
    assert hasher.git_sha1 is not None and hasher.git_sha1.hexdigest() == "ce013625030ba8dba906f756967f9e9ca394464a"
    hasher.reset()
    assert hasher.count == 0


def test_compare_files_reports_missing_resized_and_corrupted(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_bytes(b"abc")
    bad = tmp_path / "bad"
    bad.write_bytes(b"abd")
    digest = hashlib.sha256(b"abc").hexdigest()
    seen: list[int] = []
    problems = compare_files(
        [
            ("good", good, 3, digest),
            ("bad", bad, 3, digest),
            ("short", good, 4, digest),
            ("gone", tmp_path / "gone", 1, digest),
        ],
        on_bytes=seen.append,
    )
    assert [(p.path, p.problem) for p in problems] == [
        ("bad", "sha256 mismatch"),
        ("short", "size mismatch"),
        ("gone", "missing"),
    ]
    assert (
        problems[0].describe() == f"bad: sha256 mismatch: expected {digest}, got {hashlib.sha256(b'abd').hexdigest()}"
    )
    assert problems[2].describe() == "gone: missing"
    assert sum(seen) == 6
    assert hash_file(good).sha256.hexdigest() == digest
