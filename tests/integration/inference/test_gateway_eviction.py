"""Room is made, never stolen: ``max_loaded_models=1`` over real vLLM CPU engines.

A request for a second model while the first streams waits (the streaming model is not
evicted); once the stream ends, the idle model is unloaded first and the second one loads
and answers the request that waited for it. The stream is held open by its reader, not by a
race with the clock: after its first chunks the reader stops reading until the test has looked,
and the answer (8 choices with 20 logprobs per token, ~9 MB) is far more than the socket buffers
between the gateway and the reader can hold, so the gateway's relay stays in flight meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.integration.inference.conftest import API_KEY, MODEL_A, MODEL_B
from tests.support.gateway import GatewayProcess
from tests.support.net import wait_for
from tests.support.registry import RegistryStack


@pytest.fixture(scope="module")
def one_model(
    tmp_path_factory: pytest.TempPathFactory, inference_registry: RegistryStack, engine_python: Path
) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        tmp_path_factory.mktemp("gateway-eviction"),
        models_url=inference_registry.url,
        engine_python=engine_python,
        api_key=API_KEY,
        env={"LLF_INFERENCE_MAX_LOADED_MODELS": "1", "LLF_INFERENCE_RETRY_AFTER_S": "1"},
    )
    try:
        process.start()
        yield process
    finally:
        process.kill()


def read_stream(gateway: GatewayProcess, model: str, sink: list[bytes], release: threading.Event) -> None:
    """Streams a long, bulky completion; stops reading after its first chunks until ``release``."""
    body = {
        "model": model,
        "prompt": "hello",
        "max_tokens": 1500,
        "ignore_eos": True,
        "stream": True,
        "n": 8,
        "logprobs": 20,
    }
    with gateway.client(timeout=300) as http, http.stream("POST", "/v1/completions", json=body) as response:
        sink.append(f"status {response.status_code}\n".encode())
        for chunk in response.iter_raw():
            sink.append(chunk)
            if len(sink) == 3:
                release.wait(240)


def ask(gateway: GatewayProcess, model: str, answers: list[httpx.Response]) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    with gateway.client(timeout=300) as http:
        answers.append(http.post("/v1/chat/completions", json=body))


def test_a_streaming_model_is_not_evicted_and_the_idle_one_makes_room(one_model: GatewayProcess) -> None:
    status = one_model.serve(MODEL_A)
    [replica_a] = status["replicas"]
    streamed: list[bytes] = []
    answers: list[httpx.Response] = []
    release = threading.Event()
    stream = threading.Thread(target=read_stream, args=(one_model, MODEL_A, streamed, release))
    stream.start()
    waiting = threading.Thread(target=ask, args=(one_model, MODEL_B, answers))
    try:
        wait_for(lambda: len(streamed) >= 3, 120, f"the stream on {MODEL_A} to be under way")
        waiting.start()

        def b_waits() -> dict[str, Any] | None:
            status = one_model.status()
            views = {m["model"]: m for m in status["model_states"]}
            b = views.get(MODEL_B)
            return status if b and b["state"] == "loading" and b["waiting"] == 1 else None

        status = wait_for(b_waits, 30, f"the request for {MODEL_B} to wait for room")
        views = {m["model"]: m for m in status["model_states"]}
        assert views[MODEL_A]["state"] == "loaded" and views[MODEL_A]["in_flight"] == 1
        assert [r["model"] for r in status["replicas"]] == [MODEL_A]  # nothing of B started
        assert psutil.pid_exists(replica_a["pid"])
    finally:
        release.set()
        stream.join(300)
        if waiting.is_alive() or not answers:
            waiting.join(300)
    received = b"".join(streamed)
    assert received.startswith(b"status 200") and received.endswith(b"data: [DONE]\n\n"), received[-300:]
    assert b'"error"' not in received  # the stream in flight was never cut
    [answer] = answers
    assert answer.status_code == 200 and answer.json()["model"] == MODEL_B, answer.text
    status = one_model.status()
    assert status["models"] == [MODEL_B] and [m["model"] for m in status["model_states"]] == [MODEL_B]
    assert not psutil.pid_exists(replica_a["pid"])  # the idle model was unloaded to make room
    log = (one_model.workdir / "gateway.log").read_text()
    assert log.index("evicting idle model") < log.rindex("model loading")
