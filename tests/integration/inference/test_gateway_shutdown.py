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
        died: list[BaseException] = []

        def stream() -> None:
            body = {"model": MODEL_A, "prompt": "hi", "max_tokens": 200, "ignore_eos": True, "stream": True}
            try:
                with gateway.client(timeout=300) as http, http.stream("POST", "/v1/completions", json=body) as answer:
                    assert answer.status_code == 200, answer.read().decode(errors="replace")
                    for chunk in answer.iter_raw():
                        received.append(chunk)
            except BaseException as exc:  # handed to the test, which fails at once with it
                died.append(exc)

        def streaming() -> bool:
            if died:
                raise AssertionError(f"the stream reader died: {died[0]!r}\ngateway log:\n{gateway.log_tail()}")
            if not reader.is_alive():
                raise AssertionError(f"the stream ended before 3 events: {b''.join(received)[:500]!r}")
            return b"".join(received).count(b"data:") >= 3

        reader = threading.Thread(target=stream, name="sigterm-stream", daemon=True)
        reader.start()
        wait_for(streaming, 120, "three events of the stream in flight")
        started = time.monotonic()
        assert gateway.terminate(timeout=120) == 0
        took = time.monotonic() - started
        reader.join(30)
        assert not reader.is_alive(), "the stream was still open 30 s after the gateway exited"
        assert not died, f"the stream reader died: {died!r}"
        assert b"".join(received).endswith(b"data: [DONE]\n\n"), "the stream in flight was cut, not drained"
        assert leftover_engines(groups) == [], "vLLM processes outlived the gateway"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{gateway.url}/healthz", timeout=2)
        assert took < 90
    finally:
        gateway.kill()
