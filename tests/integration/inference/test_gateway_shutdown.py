"""SIGTERM of the gateway: streams in flight finish (bounded), then no engine process is left."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.inference.conftest import API_KEY, MODEL_A
from tests.support.gateway import GatewayProcess, leftover_engines
from tests.support.net import wait_for
from tests.support.registry import RegistryStack


def test_sigterm_drains_the_stream_in_flight_and_leaves_no_vllm_process_behind(
    tmp_path: Path, inference_registry: RegistryStack, engine_python: Path
) -> None:
    gateway = GatewayProcess(
        tmp_path / "gateway", models_url=inference_registry.url, engine_python=engine_python, api_key=API_KEY
    )
    try:
        gateway.start()
        gateway.serve(MODEL_A)
        groups = set(gateway.engine_pids())
        assert groups and leftover_engines(groups), "the engine should be running"
        received: list[bytes] = []

        def stream() -> None:
            body = {"model": MODEL_A, "prompt": "hi", "max_tokens": 200, "ignore_eos": True, "stream": True}
            with gateway.client(timeout=300) as http, http.stream("POST", "/v1/completions", json=body) as response:
                for chunk in response.iter_raw():
                    received.append(chunk)

        reader = threading.Thread(target=stream)
        reader.start()
        wait_for(lambda: b"".join(received).count(b"data:") >= 3, 120, "three events of the stream in flight")
        started = time.monotonic()
        assert gateway.terminate(timeout=120) == 0
        took = time.monotonic() - started
        reader.join(30)
        assert b"".join(received).endswith(b"data: [DONE]\n\n"), "the stream in flight was cut, not drained"
        assert leftover_engines(groups) == [], "vLLM processes outlived the gateway"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{gateway.url}/healthz", timeout=2)
        assert took < 90
    finally:
        gateway.kill()
