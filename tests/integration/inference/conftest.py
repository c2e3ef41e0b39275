"""Fixtures of the gateway's integration tests: a real registry, two tiny models, one gateway.

Engine starts are the cost here (~40-150 s each on a busy 2-core machine), so the session
shares one registry and one gateway; tests say which model they need (``ensure_served``) and
never assume which one an earlier test left behind. The registry has its own Redis so that
other suites' ``flushall`` cannot empty its index mid-session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import GatewayProcess
from tests.support.net import free_port
from tests.support.redis_server import RedisServer
from tests.support.registry import RegistryStack, import_tiny_model

MODEL_A = "llf-test/tiny-a"  # tiny Llama, seed 0
MODEL_B = "llf-test/tiny-b"  # tiny Llama, seed 1
API_KEY = "inference-test-key"


@pytest.fixture(scope="session")
def inference_registry(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[RegistryStack]:
    """The registry (API + one worker) with MODEL_A and MODEL_B imported and verified."""
    from llf_models.tinymodel import write_tiny_model

    workdir = tmp_path_factory.mktemp("inference-registry")
    redis = RedisServer(workdir / "redis")
    redis.start()
    stack = RegistryStack(
        workdir / "registry", redis_url=redis.url, hf_endpoint=f"http://127.0.0.1:{free_port()}", api_key=API_KEY
    )
    try:
        stack.start_api()
        stack.start_worker()
        seed_1 = write_tiny_model(workdir / "seed-1", seed=1)
        for name, directory in ((MODEL_A, tiny_model_dir), (MODEL_B, seed_1)):
            info = import_tiny_model(stack.url, directory, name, api_key=API_KEY)
            assert info["verified"], info
        yield stack
    finally:
        stack.stop()
        redis.stop()


@pytest.fixture(scope="session")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, inference_registry: RegistryStack, engine_python: Path
) -> Iterator[GatewayProcess]:
    """One ``llf-inference`` for the session, asking the registry for model paths; nothing served yet."""
    process = GatewayProcess(
        tmp_path_factory.mktemp("gateway"),
        models_url=inference_registry.url,
        engine_python=engine_python,
        api_key=API_KEY,
        env={"LLF_INFERENCE_DRAIN_TIMEOUT_S": "60", "LLF_INFERENCE_RETRY_AFTER_S": "1"},
    )
    try:
        process.start()
        yield process
    finally:
        process.kill()


def ensure_served(gateway: GatewayProcess, model: str | None = None) -> str:
    """``model`` (or whichever tiny model is served already, else MODEL_A) ready on the gateway."""
    served = gateway.status()["models"]
    if model is None and served:
        return str(served[0])
    wanted = model or MODEL_A
    if wanted not in served:
        gateway.serve(wanted)
    return wanted
