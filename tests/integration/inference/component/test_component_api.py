"""The gateway's HTTP API over real (fake-engine) processes: serving, failures, streams, restarts, swaps.

What needs no engine process (request checks, errors, auth, listings, metrics arithmetic) is
unit-tested in-process in ``tests/unit/inference/test_gateway_app.py``.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.fake_gateway import MODEL, OTHER, ThreadedGateway
from tests.support.net import wait_for

Start = Callable[..., ThreadedGateway]
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
def gw(start_gateway: Start) -> ThreadedGateway:
    gateway = start_gateway()
    assert gateway.serve().status_code == 200
    return gateway


def sse_events(text: str) -> list[str]:
    return [block[len("data: ") :] for block in text.split("\n\n") if block.startswith("data: ")]


def test_healthz_answers_and_readyz_is_503_with_retry_after_until_an_engine_is_ready(start_gateway: Start) -> None:
    gateway = start_gateway()
    assert gateway.client.get("/healthz").json() == {"status": "ok"}
    response = gateway.client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert gateway.client.get("/v1/status").json()["state"] == "idle"
    gateway.serve()
    assert gateway.client.get("/readyz").json() == {"status": "ready", "models": [MODEL]}


def test_status_reports_replica_details_for_llf_status(gw: ThreadedGateway) -> None:
    gw.client.post("/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 5})
    status = gw.client.get("/v1/status").json()
    assert status["state"] == "ready" and status["models"] == [MODEL] and status["target"] == MODEL
    [replica] = status["replicas"]
    assert replica["state"] == "ready" and replica["pid"] and replica["port"] is None  # on its private socket
    assert replica["uptime_s"] >= 0 and replica["memory_bytes"] > 0 and replica["max_model_len"] == 256
    assert replica["restarts"] == 0 and replica["in_flight"] == 0


def test_serve_without_wait_answers_202_and_a_request_meanwhile_waits_for_the_load(start_gateway: Start) -> None:
    gateway = start_gateway(engine_env={"FAKE_START_DELAY": "0.5"})
    response = gateway.client.post("/v1/serve", json={"model": MODEL})
    assert response.status_code == 202
    assert response.json()["state"] == "starting" and response.json()["target"] == MODEL
    assert [m["state"] for m in response.json()["model_states"]] == ["loading"]
    answered = gateway.client.post("/v1/chat/completions", json=CHAT)
    assert answered.status_code == 200, answered.text
    gateway.wait_state(lambda s: s["state"] == "ready")


def test_a_request_waiting_longer_than_load_timeout_gets_a_503_with_retry_after(start_gateway: Start) -> None:
    gateway = start_gateway(engine_env={"FAKE_START_DELAY": "2"}, load_timeout_s=0.2)
    assert gateway.client.post("/v1/serve", json={"model": MODEL}).status_code == 202
    busy = gateway.client.post("/v1/chat/completions", json=CHAT)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert "still loading" in busy.json()["error"]["message"]
    gateway.wait_state(lambda s: s["state"] == "ready")


def test_serve_with_wait_reports_an_engine_that_fails_to_start(start_gateway: Start) -> None:
    gateway = start_gateway(engine_env={"FAKE_FAIL": "safetensors_rust.SafetensorError: invalid header"})
    response = gateway.serve()
    assert response.status_code == 502
    assert "bad weights" in response.json()["error"]["message"]
    status = gateway.client.get("/v1/status").json()
    assert status["state"] == "failed" and status["replicas"][0]["log_tail"]
    failed = gateway.client.post("/v1/chat/completions", json=CHAT)
    assert failed.status_code == 503 and failed.json()["error"]["code"] == "engine_failed"


def test_unserve_stops_every_engine(gw: ThreadedGateway) -> None:
    pid = gw.client.get("/v1/status").json()["replicas"][0]["pid"]
    status = gw.client.delete("/v1/serve").json()
    assert status["state"] == "idle" and status["replicas"] == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_metrics_count_requests_tokens_and_time_to_first_token(gw: ThreadedGateway) -> None:
    with gw.client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
        response.read()
    gw.client.post("/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 3})
    gw.client.post("/v1/completions", json={"model": "who/else", "prompt": "x"})
    text = gw.client.get("/metrics").text
    assert 'llf_gateway_requests_total{endpoint="/v1/chat/completions",model="test/tiny",status="200"} 1.0' in text
    assert 'llf_gateway_requests_total{endpoint="/v1/completions",model="-",status="404"} 1.0' in text
    assert 'llf_gateway_tokens_generated_total{model="test/tiny"} 7.0' in text  # 4 streamed + 3 from usage
    assert 'llf_gateway_time_to_first_token_seconds_count{model="test/tiny"} 1.0' in text
    assert 'llf_gateway_inter_token_seconds_count{model="test/tiny"}' in text
    assert 'llf_gateway_replicas{state="ready"} 1.0' in text


def test_client_disconnect_cancels_the_upstream_stream(start_gateway: Start, tmp_path: Path) -> None:
    events = tmp_path / "events.log"
    gateway = start_gateway(engine_env={"FAKE_TOKEN_DELAY": "0.05", "FAKE_EVENTS": str(events)})
    gateway.serve()
    with gateway.client.stream("POST", "/v1/chat/completions", json={**CHAT, "max_tokens": 200, "stream": True}) as r:
        for _ in r.iter_raw():
            break
    wait_for(lambda: "disconnect" in events.read_text(), 10, "the engine to see the client go away")
    gateway.wait_state(lambda s: s["replicas"][0]["in_flight"] == 0)


def test_engine_death_mid_stream_ends_the_stream_with_an_error_event(start_gateway: Start) -> None:
    gateway = start_gateway(engine_env={"FAKE_TOKEN_DELAY": "0.05"})
    gateway.serve()
    pid = gateway.client.get("/v1/status").json()["replicas"][0]["pid"]
    received = b""
    with gateway.client.stream("POST", "/v1/chat/completions", json={**CHAT, "max_tokens": 200, "stream": True}) as r:
        for chunk in r.iter_raw():
            received += chunk
            if received.count(b"data:") == 3:
                os.kill(pid, signal.SIGKILL)
    events = sse_events(received.decode())
    assert "[DONE]" not in events, received
    assert events, received
    error = json.loads(events[-1])["error"]
    assert error["code"] == "engine_unavailable" and "stopped mid-stream" in error["message"]
    assert received.endswith(b"\n\n")


def test_requests_during_a_restart_get_503_with_retry_after_then_succeed(start_gateway: Start) -> None:
    gateway = start_gateway(engine_env={"FAKE_START_DELAY": "0.3"}, restart_backoff_s=0.3)
    gateway.serve()
    pid = gateway.client.get("/v1/status").json()["replicas"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    gateway.wait_state(lambda s: s["replicas"][0]["state"] == "restarting")
    response = gateway.client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    status = gateway.wait_state(lambda s: s["state"] == "ready")
    assert status["replicas"][0]["restarts"] == 1
    assert "SIGKILL" in status["replicas"][0]["last_error"]
    assert gateway.client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert 'llf_gateway_engine_restarts_total{model="test/tiny"} 1.0' in gateway.client.get("/metrics").text


def test_hot_swap_moves_traffic_to_the_new_model(gw: ThreadedGateway) -> None:
    old_pid = gw.client.get("/v1/status").json()["replicas"][0]["pid"]
    status = gw.serve(OTHER, replace=MODEL).json()
    assert status["models"] == [OTHER] and status["state"] == "ready"
    assert [r["model"] for r in status["replicas"]] == [OTHER]
    assert [(m["model"], m["state"]) for m in status["model_states"]] == [(OTHER, "loaded")]
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
    assert gw.client.post("/v1/chat/completions", json=body).json()["model"] == OTHER
    unknown = gw.client.post("/v1/chat/completions", json={**body, "model": "test/none"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


def test_serve_adds_a_model_beside_the_loaded_one_and_stop_unloads_one(gw: ThreadedGateway) -> None:
    status = gw.serve(OTHER).json()
    assert set(status["models"]) == {MODEL, OTHER}
    assert {r["placement"]["cores"][0] for r in status["replicas"]} == {0, 1}  # a core each
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
    for model in (MODEL, OTHER):
        assert gw.client.post("/v1/chat/completions", json={**body, "model": model}).json()["model"] == model
    ambiguous = gw.client.post("/v1/chat/completions", json=body)
    assert ambiguous.status_code == 400 and "several models are loaded" in ambiguous.json()["error"]["message"]
    status = gw.client.delete(f"/v1/serve/{OTHER}").json()
    assert status["models"] == [MODEL] and [m["model"] for m in status["model_states"]] == [MODEL]
    assert gw.client.delete(f"/v1/serve/{OTHER}").status_code == 404


def test_serving_the_same_model_again_keeps_the_running_engine(gw: ThreadedGateway) -> None:
    before = gw.client.get("/v1/status").json()["replicas"][0]["pid"]
    assert gw.serve().json()["replicas"][0]["pid"] == before


def test_several_replicas_share_the_load(start_gateway: Start) -> None:
    # least_loaded: the same prompt twice would stay on one replica under affinity (within its bound)
    gateway = start_gateway(engine_env={"FAKE_TOKEN_DELAY": "0.2"}, routing="least_loaded")
    status = gateway.serve(replicas=2).json()
    assert len(status["replicas"]) == 2 and all(r["state"] == "ready" for r in status["replicas"])
    with gateway.client.stream("POST", "/v1/chat/completions", json={**CHAT, "max_tokens": 40, "stream": True}) as r:
        # Keep each iterator referenced: a dropped one is closed whenever the GC gets to it, and
        # closing it hangs up on the gateway (which then rightly releases the replica).
        chunks = r.iter_raw()
        next(chunks)  # the stream is open on one replica for the next ~8 s
        try:
            gateway.wait_state(lambda s: sorted(rep["in_flight"] for rep in s["replicas"]) == [0, 1], 5.0)
        except AssertionError as exc:  # say how the stream ended, if it did
            raise AssertionError(f"{exc}; rest of the stream: {b''.join(chunks)[-400:]!r}") from None
        with gateway.client.stream("POST", "/v1/chat/completions", json={**CHAT, "max_tokens": 5, "stream": True}) as o:
            second = o.iter_raw()
            next(second)  # the second stream goes to the idle replica, not behind the first
            gateway.wait_state(lambda s: sorted(rep["in_flight"] for rep in s["replicas"]) == [1, 1], 5.0)


def test_serve_on_start_serves_the_model_without_being_asked(start_gateway: Start) -> None:
    gateway = start_gateway(serve_on_start=MODEL)
    assert gateway.wait_state(lambda s: s["state"] == "ready")["models"] == [MODEL]
