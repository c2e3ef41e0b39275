"""The vLLM engine versions are named once (deploy/engine-versions.env) and the README agrees."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
VERSIONS = ROOT / "deploy" / "engine-versions.env"
# Files that install an engine: they must read the versions file, not name a version themselves.
READERS = [
    "scripts/engine-env.sh",
    "deploy/inference.Dockerfile",
    "deploy/compose.cpu.yml",
    "deploy/compose.gpu.yml",
    "docker-compose.yml",
]


def versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in VERSIONS.read_text().splitlines() if re.match(r"^[A-Z_]+=", line))
    return {key: value.strip() for key, value in pairs}


def test_the_versions_file_names_both_engines():
    found = versions()
    assert set(found) == {"VLLM_CPU_VERSION", "VLLM_GPU_VERSION"}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+(\.post\d+)?", v) for v in found.values()), found


@pytest.mark.parametrize("path", READERS)
def test_no_installer_pins_an_engine_version_of_its_own(path):
    text = (ROOT / path).read_text()
    assert not re.search(r"vllm(-cpu)?==\d", text), f"{path} names a vLLM version: use deploy/engine-versions.env"


def test_the_readme_states_the_supported_pair():
    found = versions()
    readme = (ROOT / "README.md").read_text()
    assert f"`vllm-cpu` {found['VLLM_CPU_VERSION']}" in readme
    assert f"`vllm` {found['VLLM_GPU_VERSION']}" in readme
    assert "deploy/engine-versions.env" in readme


def test_lockpin_reads_the_one_locked_version(tmp_path):
    lockpin = runpy.run_path(str(ROOT / "deploy" / "lockpin.py"))
    lock = tmp_path / "uv.lock"
    packages = [("uv", "0.13.9"), ("rq", "2.1")]
    lock.write_text("version = 1\n" + "".join(f'[[package]]\nname = "{n}"\nversion = "{v}"\n' for n, v in packages))
    assert lockpin["locked_version"]("uv", lock) == "0.13.9"
    with pytest.raises(LookupError, match="0 times"):
        lockpin["locked_version"]("absent", lock)
