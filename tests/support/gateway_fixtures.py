"""Fixtures shared by the gateway's unit and component tests: a clean environment and fake-engine settings.

Imported into both conftests (pytest finds fixtures a conftest imports), so the two layers build
their settings the same way and no developer's ``~/.llf``, keys or URLs leak into either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from llf_inference.settings import InferenceSettings

from tests.support.env import isolate_env
from tests.support.fake_gateway import fake_engine_settings

MakeSettings = Callable[..., InferenceSettings]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No developer's ~/.llf, keys or URLs leak into a test."""
    isolate_env(monkeypatch, tmp_path / "home", prefixes=("LLF_", "FAKE_"))
    yield


@pytest.fixture
def make_settings(tmp_path: Path) -> MakeSettings:
    """Settings with fast timings, the fake engine, and MODEL/OTHER pinned to local directories."""

    def make(**overrides: Any) -> InferenceSettings:
        return fake_engine_settings(tmp_path, **overrides)

    return make
