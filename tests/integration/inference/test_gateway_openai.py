"""The OpenAI-compatible API of a real gateway in front of a real vLLM CPU engine."""

from __future__ import annotations

import json
import os
import stat

import httpx
import openai
import psutil
import pytest

from tests.integration.inference.conftest import API_KEY, ensure_served
from tests.support.gateway import GatewayProcess, engine_socket, tcp_listeners


@pytest.fixture
def client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.openai_url, api_key=API_KEY, max_retries=0, timeout=120)


def test_the_openai_client_streams_a_chat_completion_through_the_gateway(
    gateway: GatewayProcess, client: openai.OpenAI
) -> None:
    model = ensure_served(gateway)
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Hello, how are you?"}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text and finish == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16
    assert all(c.model == model for c in chunks)


def test_non_streamed_chat_and_text_completions_pass_through(gateway: GatewayProcess, client: openai.OpenAI) -> None:
    model = ensure_served(gateway)
    chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert chat.choices[0].message.content is not None and chat.usage is not None
    assert chat.usage.completion_tokens == 4
    text = client.completions.create(model=model, prompt="The quick brown fox", max_tokens=4)
    assert text.choices[0].text and text.usage is not None and text.usage.completion_tokens == 4
    streamed = client.completions.create(model=model, prompt="Hello", max_tokens=4, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices)


def test_models_lists_the_served_model_with_its_context_length(gateway: GatewayProcess, client: openai.OpenAI) -> None:
    model = ensure_served(gateway)
    listing = client.models.list()
    loaded = [m for m in listing.data if (m.model_extra or {}).get("state") == "loaded"]
    assert [m.id for m in loaded] == [model]  # then every other verified local model, as `available`
    assert {(m.model_extra or {}).get("state") for m in listing.data[1:]} <= {"available"}
    assert listing.data[0].id == model and loaded[0].model_extra is not None
    assert loaded[0].model_extra["max_model_len"] == 2048


def test_an_unknown_model_is_a_404_naming_the_served_model(gateway: GatewayProcess, client: openai.OpenAI) -> None:
    model = ensure_served(gateway)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nobody/nothing", messages=[{"role": "user", "content": "x"}])
    assert model in caught.value.message and "nobody/nothing" in caught.value.message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"messages": [{"role": "user", "content": "x"}', "not valid JSON"),
        (b'{"messages": []}', "'messages'"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}', "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1000000}', "context length 2048"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": -1}', "temperature"),
        (b'{"messages": [{"role": "user", "content": "x"}], "top_p": NaN}', "NaN"),
        (b'{"messages": [{"role": "user", "content": "x"}], "n": 0}', "'n'"),
    ],
)
def test_bad_inputs_are_rejected_with_a_400_in_openai_format(
    gateway: GatewayProcess, body: bytes, fragment: str
) -> None:
    model = ensure_served(gateway)
    payload = body.replace(b"{", b'{"model": ' + json.dumps(model).encode() + b", ", 1)
    with gateway.client() as http:
        response = http.post("/v1/chat/completions", content=payload, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert fragment in error["message"] and error["type"] == "invalid_request_error"
    assert model in gateway.status()["models"]  # the engine is still serving


def test_an_overlong_prompt_gets_the_engines_own_400(gateway: GatewayProcess, client: openai.OpenAI) -> None:
    model = ensure_served(gateway)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=model, prompt="hello " * 3000, max_tokens=8)


def test_the_api_key_is_enforced_but_health_is_open(gateway: GatewayProcess) -> None:
    ensure_served(gateway)
    anonymous = openai.OpenAI(base_url=gateway.openai_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200
    assert httpx.get(f"{gateway.url}/readyz").json()["status"] == "ready"


def test_the_engine_has_no_port_and_its_socket_is_for_the_gateways_user_alone(
    gateway: GatewayProcess, client: openai.OpenAI
) -> None:
    """vLLM checks its key only on /v1, /v2, /inference and /cohere: on a TCP port, /invocations,
    /tokenize or /metrics would answer any local user. So the engine's API listens on a Unix socket
    in a fresh directory that only the gateway's user may enter (0700), and on no TCP port."""
    model = ensure_served(gateway)
    [replica] = [r for r in gateway.status()["replicas"] if r["model"] == model and r["state"] == "ready"]
    assert replica["port"] is None
    socket = engine_socket(replica["pid"])
    assert socket is not None, psutil.Process(replica["pid"]).cmdline()
    cmdline = psutil.Process(replica["pid"]).cmdline()
    assert "--port" not in cmdline and "--host" not in cmdline
    assert "--api-key" not in " ".join(cmdline)  # the key travels in the environment, not a visible argv
    assert len(os.fsencode(socket)) <= 107 and stat.S_ISSOCK(socket.stat().st_mode)
    directory = socket.parent.stat()
    assert stat.S_IMODE(directory.st_mode) == 0o700 and directory.st_uid == os.getuid() == gateway_uid(gateway)
    assert list(socket.parent.iterdir()) == [socket]
    # The API server (the engine's leader, the only process serving HTTP) listens on no TCP port. What
    # TCP listeners the engine has are torch.distributed's gloo transport in its worker (one per
    # process group, between the worker's own ranks; not HTTP), on loopback.
    listeners = tcp_listeners(os.getpgid(replica["pid"]))
    assert not [entry for entry in listeners if entry[0] == replica["pid"]], listeners
    assert all(name.startswith("VLLM::Worker") and where.startswith("127.0.0.1:") for _, name, where in listeners)

    chat = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://engine", timeout=60) as engine:
        # The per-start key still guards vLLM's OpenAI routes, even for the socket's owner.
        assert engine.get("/v1/models").status_code == 401
        assert engine.post("/v1/chat/completions", json=chat).status_code == 401
        guessed = {"Authorization": f"Bearer {API_KEY}"}  # the gateway's own key is not the engine's
        assert engine.get("/v1/models", headers=guessed).status_code == 401
        # What the key does not guard: only whoever can enter the 0700 directory gets this far.
        invocation = engine.post("/invocations", json=chat)
        assert invocation.status_code == 200, invocation.text
    answer = client.chat.completions.create(model=model, messages=chat["messages"], max_tokens=2)
    assert answer.choices[0].message.content is not None


def gateway_uid(gateway: GatewayProcess) -> int:
    return psutil.Process(gateway.pid).uids().real


def test_serve_answers_404_for_a_model_the_registry_does_not_have(gateway: GatewayProcess) -> None:
    with gateway.client() as http:
        response = http.post("/v1/serve", json={"model": "llf-test/never-pulled"})
    assert response.status_code == 404
    assert "llf pull llf-test/never-pulled" in response.json()["error"]["message"]


def test_status_and_metrics_describe_the_served_engine(gateway: GatewayProcess, client: openai.OpenAI) -> None:
    model = ensure_served(gateway)
    list(
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}], max_tokens=8, stream=True
        )
    )
    status = gateway.status()
    assert status["state"] == "ready" and status["target"] == model
    [replica] = status["replicas"]
    assert replica["state"] == "ready" and replica["max_model_len"] == 2048 and replica["memory_bytes"] > 10**8
    with gateway.client() as http:
        text = http.get("/metrics").text
        engine = http.get(f"/metrics/engine/{replica['id']}").text
    assert f'llf_gateway_time_to_first_token_seconds_count{{model="{model}"}}' in text
    assert f'llf_gateway_tokens_generated_total{{model="{model}"}}' in text
    assert "vllm:" in engine
