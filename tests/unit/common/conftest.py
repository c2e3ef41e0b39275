"""Every llf_common unit test starts from a clean environment and an empty LLF_HOME under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_OWN_PREFIXES = ("LLF_", "HF_")
_OWN_NAMES = ("REDIS_URL",)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No LLF_/HF_/REDIS_URL variables from the caller's shell; ``LLF_HOME`` is a fresh tmp dir."""
    for name in list(os.environ):
        if name.upper().startswith(_OWN_PREFIXES) or name.upper() in _OWN_NAMES:
            monkeypatch.delenv(name)
    home = tmp_path / "llf-home"
    monkeypatch.setenv("LLF_HOME", str(home))
    return home
