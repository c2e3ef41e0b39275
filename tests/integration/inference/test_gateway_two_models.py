"""Several models in one gateway, real vLLM CPU engines: one core each, keep_alive, load on demand.

One gateway for the module (engine starts are the cost: ~25 s each on 2 cores). The tests run
in order and build on each other: both tiny models loaded, then one unloaded by keep_alive and
loaded again by a streaming request that sees ``: loading`` comment lines before its tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.inference.conftest import API_KEY, MODEL_A, MODEL_B
from tests.support.gateway import GatewayProcess
from tests.support.net import wait_for
from tests.support.registry import RegistryStack

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def pool(
    tmp_path_factory: pytest.TempPathFactory, inference_registry: RegistryStack, engine_python: Path
) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        tmp_path_factory.mktemp("gateway-models"),
        models_url=inference_registry.url,
        engine_python=engine_python,
        api_key=API_KEY,
        env={"LLF_INFERENCE_LOADING_COMMENT_INTERVAL_S": "2", "LLF_INFERENCE_RETRY_AFTER_S": "1"},
    )
    try:
        process.start()
        yield process
    finally:
        process.kill()


def states(gateway: GatewayProcess) -> dict[str, str]:
    return {m["model"]: m["state"] for m in gateway.status()["model_states"]}


def test_two_models_are_served_at_once_each_engine_bound_to_its_own_core(pool: GatewayProcess) -> None:
    pool.serve(MODEL_A)
    status = pool.serve(MODEL_B)
    assert set(status["models"]) == {MODEL_A, MODEL_B}, status
    cores = {r["model"]: r["placement"]["cores"] for r in status["replicas"]}
    assert sorted(cores.values()) == [[0], [1]], cores
    for replica in status["replicas"]:
        environment = psutil.Process(replica["pid"]).environ()
        assert environment["VLLM_CPU_OMP_THREADS_BIND"] == str(replica["placement"]["cores"][0])
    with pool.client(timeout=120) as http:
        for model in (MODEL_A, MODEL_B):
            answer = http.post("/v1/chat/completions", json={**CHAT, "model": model})
            assert answer.status_code == 200, answer.text
            assert answer.json()["model"] == model
        listed = {m["id"]: m["state"] for m in http.get("/v1/models").json()["data"]}
    assert listed[MODEL_A] == listed[MODEL_B] == "loaded"


def test_keep_alive_unloads_an_idle_model_and_a_stream_loads_it_again_after_comment_lines(
    pool: GatewayProcess,
) -> None:
    if MODEL_A not in pool.status()["models"]:
        pool.serve(MODEL_A)
    with pool.client(timeout=120) as http:
        answer = http.post("/v1/chat/completions", json={**CHAT, "model": MODEL_A, "keep_alive": "1s"})
        assert answer.status_code == 200, answer.text
    wait_for(lambda: MODEL_A not in states(pool), 120, f"keep_alive to unload {MODEL_A}")
    assert MODEL_B in pool.status()["models"]  # the other model is untouched
    body = {**CHAT, "model": MODEL_A, "stream": True, "max_tokens": 8}
    lines: list[str] = []
    with pool.client(timeout=300) as http, http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines.extend(line for line in response.iter_lines() if line)
    comments = [line for line in lines if line.startswith(":")]
    events = [line for line in lines if line.startswith("data: ")]
    assert comments and comments[0].startswith(f": loading {MODEL_A} "), lines[:5]
    assert lines.index(comments[-1]) < lines.index(events[0])  # comments while loading, then tokens
    assert events[-1] == "data: [DONE]" and not any('"error"' in e for e in events), events[-3:]
    assert states(pool)[MODEL_A] == "loaded"


def test_a_model_the_registry_does_not_know_is_still_a_404(pool: GatewayProcess) -> None:
    with pool.client() as http:
        response = http.post("/v1/chat/completions", json={**CHAT, "model": "llf-test/missing"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
