"""Fixtures shared by the gateway's unit and component tests: a clean environment and fake-engine settings.

Imported into both conftests (pytest finds fixtures a conftest imports), so the two layers build
their settings the same way and no developer's ``~/.llf``, keys or URLs leak into either.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from llf_inference.settings import InferenceSettings

from tests.support.fake_gateway import fake_engine_settings

MakeSettings = Callable[..., InferenceSettings]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No developer's ~/.llf, keys or URLs leak into a test."""
    for name in list(os.environ):
        if name.startswith(("LLF_", "FAKE_")) or name in {"HF_ENDPOINT", "HF_TOKEN", "REDIS_URL"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("LLF_HOME", str(tmp_path / "home"))
    yield


@pytest.fixture
def make_settings(tmp_path: Path) -> MakeSettings:
    """Settings with fast timings, the fake engine, and MODEL/OTHER pinned to local directories."""

    def make(**overrides: Any) -> InferenceSettings:
        return fake_engine_settings(tmp_path, **overrides)

    return make
