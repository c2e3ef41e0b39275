"""Fixtures of the gateway's component tests: the real app and real engine processes, fake engine.

These tests start processes and servers (the fake engine as the engine command, the gateway
under uvicorn in a thread), which is why they are integration tests; they take a second per
engine instead of vLLM's ~25 s, so they cover the process handling (process groups, log
capture, crash detection, restart, drain, disconnects) in depth. Every gateway started here
is stopped in ``finally``, with its engines.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from llf_inference.settings import InferenceSettings

from tests.support.fake_gateway import ThreadedGateway, fake_engine_settings

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


@pytest.fixture
def start_gateway(make_settings: MakeSettings) -> Iterator[Callable[..., ThreadedGateway]]:
    """Start the real app in a thread (``start(**settings_overrides)``); all of them stop at the end."""
    started: list[ThreadedGateway] = []

    def start(**overrides: Any) -> ThreadedGateway:
        gateway = ThreadedGateway(make_settings(**overrides))
        started.append(gateway)
        return gateway.start()

    try:
        yield start
    finally:
        errors = []
        for gateway in started:
            try:
                gateway.stop()
            except Exception as exc:  # stop the others anyway, then report
                errors.append(exc)
        if errors:
            raise errors[0]
