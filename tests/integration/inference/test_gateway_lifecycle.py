"""Hot swap and engine crashes on a real gateway and real vLLM CPU engines.

"No failed request" during a swap means: a client that honours ``Retry-After`` gets every
answer it asks for. On CPU the gateway swaps stop-then-start, so while it switches it answers
503 + ``Retry-After`` (never a 404, a 5xx without Retry-After, a reset connection or a
truncated stream), and a stream that was running when the swap began finishes normally.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field

import httpx

from tests.integration.inference.conftest import MODEL_A, MODEL_B, ensure_served
from tests.support.gateway import GatewayProcess
from tests.support.net import wait_for


@dataclass
class PatientClient:
    """Sends chat requests in a loop, honouring Retry-After; records anything else as a failure."""

    gateway: GatewayProcess
    model: str | None = None  # None: whatever the gateway serves (vLLM's own rule)
    ok: list[str] = field(default_factory=list)
    retried: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        body: dict[str, object] = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
        if self.model:
            body["model"] = self.model
        with self.gateway.client(timeout=600) as http:  # a request may wait for its model to load
            while not self.stop.is_set():
                try:
                    response = http.post("/v1/chat/completions", json=body)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code == 200:
                    self.ok.append(response.json()["model"])
                elif response.status_code == 503 and "retry-after" in response.headers:
                    self.retried += 1
                    time.sleep(float(response.headers["retry-after"]))
                else:
                    self.failures.append(f"{response.status_code}: {response.text[:300]}")
                    time.sleep(0.5)


def read_stream(gateway: GatewayProcess, model: str, max_tokens: int, sink: list[bytes]) -> None:
    body = {"model": model, "prompt": "hello", "max_tokens": max_tokens, "ignore_eos": True, "stream": True}
    with gateway.client(timeout=300) as http, http.stream("POST", "/v1/completions", json=body) as response:
        sink.append(f"status {response.status_code}\n".encode())
        for chunk in response.iter_raw():
            sink.append(chunk)


def test_hot_swap_between_two_tiny_models_fails_no_request_of_a_patient_client(gateway: GatewayProcess) -> None:
    old = ensure_served(gateway)
    new = MODEL_B if old == MODEL_A else MODEL_A
    with gateway.client() as http:  # only the old model loaded: the follower names none
        for model in set(gateway.status()["models"]) - {old}:
            assert http.delete(f"/v1/serve/{model}").status_code == 200
    in_flight: list[bytes] = []
    stream = threading.Thread(target=read_stream, args=(gateway, old, 300, in_flight))
    stream.start()
    wait_for(lambda: len(in_flight) >= 3, 120, f"the stream on {old} to be under way before the swap")
    follower = PatientClient(gateway)  # follows the gateway's current model
    switcher = PatientClient(gateway, model=new)  # asks for the new model as soon as it is asked for
    threads = [threading.Thread(target=c.run) for c in (follower, switcher)]
    threads[0].start()
    try:
        wait_for(
            lambda: follower.ok or follower.retried or follower.failures,
            60,
            "the follower's first answer before the swap",
        )
        status = gateway.serve(new, wait=False, replace=old)
        threads[1].start()
        assert status["target"] == new and status["state"] in ("switching", "starting", "ready")
        gateway.wait_model(new)
        wait_for(
            lambda: min(follower.ok.count(new), switcher.ok.count(new)) >= 3 or follower.failures or switcher.failures,
            120,
            f"three answers from {new} to each client",
        )
    finally:
        follower.stop.set()
        switcher.stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(180)
        stream.join(300)
    assert follower.failures == [] and switcher.failures == []
    # They met the switch: answers from the old model, then (after waiting for the new one to
    # load, or a 503 + Retry-After) only from the new one.
    assert follower.ok[0] == old and follower.ok.count(new) >= 3 and switcher.ok.count(new) >= 3
    assert follower.ok[-1] == new and set(switcher.ok) == {new}
    received = b"".join(in_flight)
    assert received.startswith(b"status 200") and received.endswith(b"data: [DONE]\n\n"), received[-300:]
    assert b'"error"' not in received
    status = gateway.status()
    assert status["models"] == [new] and [r["model"] for r in status["replicas"]] == [new]
    assert [m["model"] for m in status["model_states"]] == [new]  # the old model is unloaded


def test_kill_9_of_the_engine_ends_streams_with_an_error_then_503_until_it_is_back(gateway: GatewayProcess) -> None:
    model = ensure_served(gateway)
    [replica] = gateway.status()["replicas"]
    received: list[bytes] = []
    stream = threading.Thread(target=read_stream, args=(gateway, model, 2000, received))
    stream.start()
    wait_for(lambda: b"".join(received).count(b"data:") >= 5, 120, f"five events of the stream on {model}")
    os.kill(replica["pid"], signal.SIGKILL)
    stream.join(60)
    assert not stream.is_alive(), "the stream hung after the engine died"
    events = [e for e in b"".join(received).decode().split("\n\n") if e.startswith("data: ")]
    error = json.loads(events[-1][len("data: ") :])["error"]
    assert error["code"] == "engine_unavailable" and "stopped mid-stream" in error["message"]

    body = {"model": model, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    with gateway.client() as http:
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
        assert any(word in response.json()["error"]["message"] for word in ("restarting", "unavailable"))
        assert http.get("/readyz").status_code == 503
        status = gateway.wait_model(model)
        assert status["replicas"][0]["restarts"] == 1
        assert "SIGKILL" in status["replicas"][0]["last_error"]
        assert http.post("/v1/chat/completions", json=body).status_code == 200
        assert f'llf_gateway_engine_restarts_total{{model="{model}"}} 1.0' in http.get("/metrics").text
