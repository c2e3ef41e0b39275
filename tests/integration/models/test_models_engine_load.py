"""The pulled snapshot directory loads in the real vLLM CPU engine and answers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import TINY_REPO
from tests.support.engine import VllmEngine
from tests.support.hub import HubStandIn
from tests.support.registry import RegistryStack, wait_job

pytestmark = pytest.mark.timeout(420)


def test_the_pulled_snapshot_loads_in_vllm_and_completes(
    stack: RegistryStack, fresh_hub: HubStandIn, engine_python: Path, tmp_path: Path
) -> None:
    stack.start_worker()
    pull = httpx.post(f"{stack.url}/v1/pulls", json={"repo": TINY_REPO}, timeout=30).json()
    assert wait_job(stack.url, pull["job_id"], timeout=60)["state"] == "finished"
    snapshot = httpx.get(f"{stack.url}/v1/models/{TINY_REPO}", timeout=10).json()["path"]
    stack.stop()  # free the CPU for the engine

    engine = VllmEngine(engine_python, snapshot, tmp_path / "engine.log", extra_args=["--served-model-name", "tiny"])
    with engine:
        reply = httpx.post(
            f"{engine.url}/completions",
            json={"model": "tiny", "prompt": "Hello", "max_tokens": 4, "temperature": 0},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] >= 1
    print(f"engine on the pulled snapshot: healthy after {engine.startup_seconds:.0f} s")
