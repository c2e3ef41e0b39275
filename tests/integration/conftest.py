"""Real components for integration tests: redis-server, the hub stand-in, the tiny model, a vLLM engine.

Every server here is session-scoped (started once, on a free port, data under pytest's tmp
dirs) and stopped in ``finally``. Nothing is skipped when a component is missing: a missing
redis-server or engine venv is a broken set-up, and the test fails saying how to fix it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# huggingface_hub reads these at import time; the stand-in speaks plain HTTP, never Xet.
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from tests.support.engine import VllmEngine
from tests.support.engine import engine_python as _engine_python
from tests.support.hub import TINY_REPO, HubStandIn
from tests.support.redis_server import RedisServer


# ---------------------------------------------------------------- redis
@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server (AOF on) for the session; tests may kill/restart it."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, running and empty (a previous test may have killed or filled it)."""
    if not redis_server.running:
        redis_server.start()
    redis_server.flushall()
    return redis_server.url


# ---------------------------------------------------------------- hub stand-in
@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubStandIn]:
    """The hub stand-in, serving; ``TINY_REPO`` (tiny model, seed 0) is already there.

    Session-wide: a test that injects faults should use ``fresh_hub`` (or call
    ``reset_faults()``) and use its own repo ids when it adds commits.
    """
    stand_in = HubStandIn(tmp_path_factory.mktemp("hub"))
    stand_in.add_tiny_model(TINY_REPO, seed=0)
    stand_in.start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture(scope="session")
def tiny_repo(hub: HubStandIn) -> str:
    """Repo id of the tiny model on the session's hub (its ``main`` never moves)."""
    return TINY_REPO


@pytest.fixture
def fresh_hub(hub: HubStandIn) -> Iterator[HubStandIn]:
    """The session's hub with no faults and zeroed counters, cleaned again after the test."""
    hub.reset_faults()
    hub.reset_counters()
    try:
        yield hub
    finally:
        hub.reset_faults()


@pytest.fixture
def hub_env(hub: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing huggingface_hub (in a subprocess, or code reading env) at the stand-in."""
    assert hub.url is not None
    values = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return {**os.environ}


# ---------------------------------------------------------------- model and engine
@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama (seed 0) written once per session."""
    from llf_models.tinymodel import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture(scope="session")
def engine_python() -> Path:
    """The engine venv's python; a missing engine venv fails (never skips) with the fix."""
    python = _engine_python()
    if not os.access(python, os.X_OK):
        pytest.fail(
            f"vLLM engine venv not found at {python}: run `make engine` (or set LLF_INFERENCE_ENGINE_PYTHON)",
            pytrace=False,
        )
    return python


@pytest.fixture(scope="session")
def engine(engine_python: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmEngine]:
    """One real vLLM CPU engine on the tiny model for the whole session (~40-80 s to start)."""
    log = tmp_path_factory.mktemp("engine") / "engine.log"
    server = VllmEngine(engine_python, tiny_model_dir, log, extra_args=["--served-model-name", "tiny"])
    try:
        server.start()
        yield server
    finally:
        server.stop()
