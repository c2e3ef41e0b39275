"""The model lifecycle through the real app and real engine processes (the fake engine): load on
demand, ``: loading`` comments, eviction that never takes a busy model, keep_alive, restart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import psutil

from tests.support.fake_gateway import MODEL, OTHER, ThreadedGateway
from tests.support.net import wait_for

Start = Callable[..., ThreadedGateway]
CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}


def states(gateway: ThreadedGateway) -> dict[str, dict[str, Any]]:
    return {m["model"]: m for m in gateway.client.get("/v1/status").json()["model_states"]}


def pids(gateway: ThreadedGateway, model: str) -> list[int]:
    replicas = gateway.client.get("/v1/status").json()["replicas"]
    return [r["pid"] for r in replicas if r["model"] == model and r["pid"]]


def test_a_request_for_an_unloaded_model_loads_it_and_is_answered(start_gateway: Start) -> None:
    gateway = start_gateway()
    response = gateway.client.post("/v1/chat/completions", json={**CHAT, "model": OTHER})
    assert response.status_code == 200 and response.json()["model"] == OTHER
    assert states(gateway)[OTHER]["state"] == "loaded"


def test_a_stream_waiting_for_its_model_gets_loading_comments_then_tokens(start_gateway: Start) -> None:
    gateway = start_gateway(engine_env={"FAKE_START_DELAY": "1.5"}, loading_comment_interval_s=0.3)
    body = {**CHAT, "model": MODEL, "stream": True}
    with gateway.client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    comments = [line for line in lines if line.startswith(":")]
    assert len(comments) >= 2 and comments[0] == f": loading {MODEL} 0 s", lines
    first_event = next(i for i, line in enumerate(lines) if line.startswith("data: "))
    assert all(line.startswith(":") for line in lines[:first_event]) and lines[-1] == "data: [DONE]"


def test_with_one_model_allowed_the_idle_model_makes_room_but_a_streaming_one_does_not(start_gateway: Start) -> None:
    gateway = start_gateway(max_loaded_models=1, engine_env={"FAKE_TOKEN_DELAY": "0.05"})
    assert gateway.serve(MODEL).status_code == 200
    [first] = pids(gateway, MODEL)
    streamed: list[str] = []
    answers: list[httpx.Response] = []

    def stream() -> None:
        body = {**CHAT, "model": MODEL, "stream": True, "max_tokens": 60}
        with (
            httpx.Client(base_url=gateway.url, timeout=30) as http,
            http.stream("POST", "/v1/chat/completions", json=body) as response,
        ):
            streamed.extend(line for line in response.iter_lines() if line)

    def ask() -> None:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            answers.append(http.post("/v1/chat/completions", json={**CHAT, "model": OTHER}))

    streaming, asking = threading.Thread(target=stream), threading.Thread(target=ask)
    streaming.start()
    try:
        wait_for(lambda: states(gateway)[MODEL]["in_flight"] == 1, 10, f"the stream on {MODEL}")
        asking.start()
        wait_for(lambda: states(gateway).get(OTHER, {}).get("waiting") == 1, 10, f"{OTHER} to wait for room")
        assert states(gateway)[MODEL]["state"] == "loaded" and psutil.pid_exists(first)
    finally:
        streaming.join(30)
        asking.join(30)
    assert streamed[-1] == "data: [DONE]" and not any('"error"' in line for line in streamed)
    [answer] = answers
    assert answer.status_code == 200 and answer.json()["model"] == OTHER
    assert list(states(gateway)) == [OTHER] and not psutil.pid_exists(first)


def test_keep_alive_0_unloads_after_the_request_and_the_next_one_loads_again(start_gateway: Start) -> None:
    gateway = start_gateway()
    assert gateway.serve(MODEL).status_code == 200
    [first] = pids(gateway, MODEL)
    done = gateway.client.post("/v1/chat/completions", json={**CHAT, "model": MODEL, "keep_alive": 0})
    assert done.status_code == 200
    wait_for(lambda: MODEL not in states(gateway), 10, f"{MODEL} to be unloaded")
    assert not psutil.pid_exists(first)
    again = gateway.client.post("/v1/chat/completions", json={**CHAT, "model": MODEL})
    assert again.status_code == 200 and pids(gateway, MODEL) != [first]


def test_keep_alive_in_the_settings_unloads_an_idle_model_and_status_shows_when(start_gateway: Start) -> None:
    gateway = start_gateway(keep_alive="1s")
    assert gateway.serve(MODEL).status_code == 200
    until = states(gateway)[MODEL]["until"]
    assert until is not None and states(gateway)[MODEL]["keep_alive_s"] == 1.0
    wait_for(lambda: MODEL not in states(gateway), 10, f"keep_alive to unload {MODEL}")


def test_a_restarted_gateway_loads_the_models_that_were_loaded(start_gateway: Start) -> None:
    first = start_gateway(serve_on_start=[MODEL])
    wait_for(lambda: MODEL in first.client.get("/v1/status").json()["models"], 20, f"{MODEL} served at start")
    assert first.serve(OTHER).status_code == 200
    first.stop()
    second = start_gateway()
    wait_for(
        lambda: set(second.client.get("/v1/status").json()["models"]) == {MODEL, OTHER},
        20,
        "both models loaded again after the restart",
    )
