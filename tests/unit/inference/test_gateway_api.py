"""The gateway's HTTP API end to end, over a fake engine: relay, errors, control plane, metrics."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.unit.inference.helpers import MODEL, OTHER, ThreadedGateway, free_port

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


def test_streaming_chat_is_relayed_byte_for_byte_and_ends_with_done(gw: ThreadedGateway) -> None:
    with gw.client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    direct_port = gw.client.get("/v1/status").json()["replicas"][0]["port"]
    direct = httpx.post(f"http://127.0.0.1:{direct_port}/v1/chat/completions", json={**CHAT, "stream": True}).text
    assert text == direct
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == " t0"


def test_non_streamed_completion_passes_the_engine_reply_through(gw: ThreadedGateway) -> None:
    response = gw.client.post("/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 3})
    assert response.status_code == 200
    assert response.json()["usage"]["completion_tokens"] == 3
    assert response.headers["x-request-id"]


def test_a_request_without_model_goes_to_the_current_model(gw: ThreadedGateway) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    response = gw.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.json()["model"] == MODEL


def test_models_lists_served_models_in_openai_format(gw: ThreadedGateway) -> None:
    listing = gw.client.get("/v1/models").json()
    assert listing["object"] == "list"
    [entry] = listing["data"]
    assert entry["id"] == MODEL and entry["object"] == "model" and entry["max_model_len"] == 256


def test_status_reports_replica_details_for_llf_status(gw: ThreadedGateway) -> None:
    gw.client.post("/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 5})
    status = gw.client.get("/v1/status").json()
    assert status["state"] == "ready" and status["models"] == [MODEL] and status["target"] == MODEL
    [replica] = status["replicas"]
    assert replica["state"] == "ready" and replica["pid"] and replica["port"]
    assert replica["uptime_s"] >= 0 and replica["memory_bytes"] > 0 and replica["max_model_len"] == 256
    assert replica["restarts"] == 0 and replica["in_flight"] == 0


def test_unknown_model_is_a_404_in_openai_format_naming_the_served_models(gw: ThreadedGateway) -> None:
    response = gw.client.post("/v1/chat/completions", json={**CHAT, "model": "nobody/there"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
    assert "nobody/there" in error["message"] and MODEL in error["message"]


def test_no_model_served_is_a_404_that_says_how_to_serve_one(start_gateway: Start) -> None:
    gateway = start_gateway()
    response = gateway.client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 404
    assert "llf serve" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"model": "test/tiny", "messages": [', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"", "empty"),
        (b'{"model": "test/tiny", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}', "NaN"),
        (b'{"model": "test/tiny", "messages": []}', "'messages'"),
        (b'{"model": "test/tiny", "messages": "hi"}', "'messages'"),
        (b'{"model": "test/tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": "9"}', "max_tokens"),
        (b'{"model": "test/tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}', "context"),
        (b'{"model": "test/tiny", "messages": [{"role": "user", "content": "x"}], "temperature": -1}', "temperature"),
        (b'{"model": "test/tiny", "messages": [{"role": "user", "content": "x"}], "top_p": 0}', "top_p"),
        (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', "'model'"),
    ],
)
def test_bad_chat_requests_are_400_before_reaching_the_engine(
    gw: ThreadedGateway, tmp_path: Path, body: bytes, fragment: str
) -> None:
    response = gw.client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert fragment in error["message"] and error["type"] == "invalid_request_error"


def test_bad_completion_prompt_is_400(gw: ThreadedGateway) -> None:
    response = gw.client.post("/v1/completions", json={"model": MODEL, "prompt": []})
    assert response.status_code == 400
    assert "'prompt'" in response.json()["error"]["message"]


def test_oversized_body_is_413_in_openai_format(start_gateway: Start) -> None:
    gateway = start_gateway(max_body_bytes=2048)
    response = gateway.client.post("/v1/completions", json={"model": MODEL, "prompt": "x" * 5000})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_unknown_route_is_404_in_openai_format(start_gateway: Start) -> None:
    response = start_gateway().client.get("/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Not Found"


def test_api_key_is_required_everywhere_but_health(start_gateway: Start) -> None:
    gateway = start_gateway(api_key="s3cret")
    anonymous = httpx.Client(base_url=gateway.url)
    for method, path in [
        ("GET", "/v1/models"),
        ("GET", "/v1/status"),
        ("GET", "/metrics"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/serve"),
    ]:
        response = anonymous.request(method, path, json={})
        assert response.status_code == 401, path
        assert "API key" in response.json()["error"]["message"]
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").status_code == 503
    assert gateway.client.get("/v1/status").status_code == 200
    anonymous.close()


def test_serve_refuses_a_model_the_registry_does_not_have(start_gateway: Start) -> None:
    gateway = start_gateway(models_url="http://127.0.0.1:9")  # nothing listens on the discard port
    response = gateway.client.post("/v1/serve", json={"model": "no/registry"})
    assert response.status_code == 502
    assert "registry" in response.json()["error"]["message"]


def test_serve_validates_its_body(start_gateway: Start) -> None:
    response = start_gateway().client.post("/v1/serve", json={"model": "../etc"})
    assert response.status_code == 422


def test_serve_without_wait_answers_202_with_the_starting_state(start_gateway: Start) -> None:
    gateway = start_gateway(engine_env={"FAKE_START_DELAY": "0.5"})
    response = gateway.client.post("/v1/serve", json={"model": MODEL})
    assert response.status_code == 202
    assert response.json()["state"] == "starting" and response.json()["target"] == MODEL
    busy = gateway.client.post("/v1/chat/completions", json=CHAT)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert "not ready yet" in busy.json()["error"]["message"]
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


def test_engine_metrics_are_passed_through_per_replica(gw: ThreadedGateway) -> None:
    rid = gw.client.get("/v1/status").json()["replicas"][0]["id"]
    assert "vllm:fake_metric" in gw.client.get(f"/metrics/engine/{rid}").text
    assert gw.client.get("/metrics/engine/r99").status_code == 404


def test_client_disconnect_cancels_the_upstream_stream(start_gateway: Start, tmp_path: Path) -> None:
    events = tmp_path / "events.log"
    gateway = start_gateway(engine_env={"FAKE_TOKEN_DELAY": "0.05", "FAKE_EVENTS": str(events)})
    gateway.serve()
    with gateway.client.stream("POST", "/v1/chat/completions", json={**CHAT, "max_tokens": 200, "stream": True}) as r:
        for _ in r.iter_raw():
            break
    deadline = time.monotonic() + 10
    while "disconnect" not in events.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "disconnect" in events.read_text()
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
    status = gw.serve(OTHER).json()
    assert status["models"] == [OTHER] and status["state"] == "ready"
    assert [r["model"] for r in status["replicas"]] == [OTHER]
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
    assert gw.client.post("/v1/chat/completions", json=body).json()["model"] == OTHER
    assert gw.client.post("/v1/chat/completions", json={**body, "model": MODEL}).status_code == 404


def test_serving_the_same_model_again_keeps_the_running_engine(gw: ThreadedGateway) -> None:
    before = gw.client.get("/v1/status").json()["replicas"][0]["pid"]
    assert gw.serve().json()["replicas"][0]["pid"] == before


def test_several_replicas_share_the_load(start_gateway: Start) -> None:
    gateway = start_gateway(engine_env={"FAKE_TOKEN_DELAY": "0.2"})
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


def test_serve_on_start_reports_a_model_it_cannot_serve(start_gateway: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    from llf_common.errors import NotFound
    from llf_inference import gateway as gateway_module

    async def missing(settings: object, model: str) -> None:
        raise NotFound(f"model {model} is not in the registry")

    monkeypatch.setattr(gateway_module.registry, "resolve", missing)
    gateway = start_gateway(serve_on_start="o/missing")
    status = gateway.wait_state(lambda s: s["message"] is not None)
    assert status["message"] == "could not serve o/missing at start: model o/missing is not in the registry"


def test_serve_on_start_waits_for_a_registry_that_is_not_up_yet(start_gateway: Start) -> None:
    gateway = start_gateway(serve_on_start="o/later", models_url=f"http://127.0.0.1:{free_port()}")
    time.sleep(0.5)
    status = gateway.client.get("/v1/status").json()
    assert status["state"] == "idle" and status["message"] is None  # still trying, not failed
