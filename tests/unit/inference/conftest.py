"""Fixtures of the gateway's unit tests: clean settings, a fake engine command, a gateway in a thread.

The fake engine (``fake_engine.py``) is a tiny uvicorn app that takes vLLM's command line, so
the supervisor's real process handling (process groups, log capture, crash detection, restart)
runs in under a second per engine instead of ~40 s with vLLM. It is never used in integration
tests, which run the real engine.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from llf_inference.settings import InferenceSettings

from tests.unit.inference.helpers import FAKE_ENGINE, MODEL, OTHER, ThreadedGateway, model_dir

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
        env = overrides.pop("engine_env", {})
        values: dict[str, Any] = {
            "home": tmp_path / "home",
            "device": "cpu",
            "engine_command": [sys.executable, str(FAKE_ENGINE)],
            "model_paths": {MODEL: str(model_dir(tmp_path, MODEL)), OTHER: str(model_dir(tmp_path, OTHER))},
            "engine_env": env,
            "readiness_timeout_s": 20.0,
            "health_interval_s": 0.05,
            "liveness_interval_s": 0.2,
            "liveness_failures": 2,
            "restart_backoff_s": 0.05,
            "restart_backoff_max_s": 0.2,
            "stop_timeout_s": 3.0,
            "drain_timeout_s": 2.0,
            "retry_after_s": 1,
        }
        values.update(overrides)
        return InferenceSettings(**values)

    return make


@pytest.fixture
def start_gateway(make_settings: MakeSettings) -> Iterator[Callable[..., ThreadedGateway]]:
    started: list[ThreadedGateway] = []

    def start(**overrides: Any) -> ThreadedGateway:
        gateway = ThreadedGateway(make_settings(**overrides)).start()
        started.append(gateway)
        return gateway

    try:
        yield start
    finally:
        for gateway in started:
            gateway.stop()
