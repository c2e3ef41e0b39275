"""The OpenAI-compatible API of a real gateway in front of a real vLLM CPU engine."""

from __future__ import annotations

import json

import httpx
import openai
import psutil
import pytest

from tests.integration.inference.conftest import API_KEY, ensure_served
from tests.support.gateway import GatewayProcess


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


def test_the_engine_port_refuses_a_caller_without_the_gateways_key(
    gateway: GatewayProcess, client: openai.OpenAI
) -> None:
    """vLLM listens on 127.0.0.1 where any local user reaches it: only the gateway has its key."""
    model = ensure_served(gateway)
    [replica] = gateway.status()["replicas"]
    engine = f"http://127.0.0.1:{replica['port']}"
    chat = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.get(f"{engine}/v1/models", timeout=30).status_code == 401
    assert httpx.post(f"{engine}/v1/chat/completions", json=chat, timeout=30).status_code == 401
    guessed = {"Authorization": f"Bearer {API_KEY}"}  # the gateway's own key is not the engine's
    assert httpx.get(f"{engine}/v1/models", headers=guessed, timeout=30).status_code == 401
    assert httpx.get(f"{engine}/health", timeout=30).status_code == 200  # vLLM leaves /health open
    cmdline = " ".join(psutil.Process(replica["pid"]).cmdline())
    assert "--api-key" not in cmdline  # the key travels in the environment, not a visible argv
    answer = client.chat.completions.create(model=model, messages=chat["messages"], max_tokens=2)
    assert answer.choices[0].message.content is not None


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
