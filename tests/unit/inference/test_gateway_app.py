"""The gateway's HTTP API in-process: ``create_app(settings, gateway)`` over ``httpx.ASGITransport``.

No engine process and no server: the gateway gets a ``FakeResolver`` and, where a test needs a
model served, a ready replica answering from the in-process fake engine (``fakes.py``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from llf_common.errors import NotFound, UpstreamError
from llf_inference.app import create_app
from llf_inference.gateway import Gateway
from llf_inference.settings import InferenceSettings

from tests.support.fake_gateway import MODEL, OTHER
from tests.support.net import async_wait_for
from tests.unit.inference.fakes import FakeResolver, ready_replica

pytestmark = pytest.mark.anyio
MakeSettings = Callable[..., InferenceSettings]
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
def gateway(make_settings: MakeSettings) -> Gateway:
    return Gateway(make_settings(), resolver=FakeResolver())


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(gateway.settings, gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


@pytest.fixture
def served(gateway: Gateway) -> Gateway:
    """The gateway with MODEL ready on one in-process replica."""
    ready_replica(gateway, MODEL)
    return gateway


def sse_events(text: str) -> list[str]:
    return [block[len("data: ") :] for block in text.split("\n\n") if block.startswith("data: ")]


# ------------------------------------------------------------------ nothing served
async def test_healthz_answers_and_readyz_is_503_with_retry_after_while_nothing_is_ready(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    response = await client.get("/readyz")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["status"] == "idle"
    assert (await client.get("/v1/status")).json()["state"] == "idle"


async def test_no_model_served_is_a_404_that_says_how_to_serve_one(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
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
async def test_bad_chat_requests_are_400_before_reaching_the_engine(
    served: Gateway, client: httpx.AsyncClient, body: bytes, fragment: str
) -> None:
    response = await client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert fragment in error["message"] and error["type"] == "invalid_request_error"


async def test_bad_completion_prompt_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/completions", json={"model": MODEL, "prompt": []})
    assert response.status_code == 400
    assert "'prompt'" in response.json()["error"]["message"]


async def test_oversized_body_is_413_in_openai_format(make_settings: MakeSettings) -> None:
    gateway = Gateway(make_settings(max_body_bytes=2048), resolver=FakeResolver())
    transport = httpx.ASGITransport(app=create_app(gateway.settings, gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.post("/v1/completions", json={"model": MODEL, "prompt": "x" * 5000})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_unknown_route_is_404_in_openai_format(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Not Found"


async def test_api_key_is_required_everywhere_but_health(make_settings: MakeSettings) -> None:
    gateway = Gateway(make_settings(api_key="s3cret"), resolver=FakeResolver())
    transport = httpx.ASGITransport(app=create_app(gateway.settings, gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as anonymous:
        for method, path in [
            ("GET", "/v1/models"),
            ("GET", "/v1/status"),
            ("GET", "/metrics"),
            ("GET", "/metrics/engine/r0"),
            ("POST", "/v1/chat/completions"),
            ("POST", "/v1/completions"),
            ("POST", "/v1/serve"),
            ("DELETE", "/v1/serve"),
        ]:
            response = await anonymous.request(method, path, json={})
            assert response.status_code == 401, path
            assert "API key" in response.json()["error"]["message"]
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/readyz")).status_code == 503
        allowed = await anonymous.get("/v1/status", headers={"Authorization": "Bearer s3cret"})
        assert allowed.status_code == 200


# ------------------------------------------------------------------ serve
async def test_serve_refuses_a_model_the_resolver_does_not_know_and_starts_nothing(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    response = await client.post("/v1/serve", json={"model": "no/such"})
    assert response.status_code == 404
    assert "llf pull no/such" in response.json()["error"]["message"]
    assert gateway.supervisor.replicas == [] and gateway.status().target is None


async def test_serve_says_502_when_the_registry_is_unreachable(make_settings: MakeSettings) -> None:
    down = FakeResolver(script=[UpstreamError("cannot reach the model registry at http://registry.test")])
    gateway = Gateway(make_settings(), resolver=down)
    transport = httpx.ASGITransport(app=create_app(gateway.settings, gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.post("/v1/serve", json={"model": "o/m"})
    assert response.status_code == 502
    assert "registry" in response.json()["error"]["message"]
    assert down.asked == ["o/m"]


async def test_serve_validates_its_body(gateway: Gateway, client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/serve", json={"model": "../etc"})
    assert response.status_code == 422
    assert gateway.resolver.asked == []  # type: ignore[attr-defined]


async def test_serve_on_start_keeps_asking_a_registry_that_is_not_up_yet(make_settings: MakeSettings) -> None:
    resolver = FakeResolver(
        script=[UpstreamError("registry down"), UpstreamError("registry down"), NotFound("o/later is not there")],
        gated=True,
    )
    gateway = Gateway(make_settings(), resolver=resolver, serve_on_start_retry_s=0.01)
    try:
        gateway.serve_on_start("o/later")
        for attempt in (2, 3):
            resolver.release()
            await async_wait_for(lambda n=attempt: len(resolver.asked) == n, 5, f"attempt {attempt} at the registry")
            status = gateway.status()
            assert status.state == "idle" and status.message is None  # still trying, not failed
        resolver.release()
        await async_wait_for(lambda: gateway.status().message, 5, "serve on start to give up on o/later")
        assert gateway.status().message == "could not serve o/later at start: o/later is not there"
        assert resolver.asked == ["o/later"] * 3
    finally:
        await gateway.close()


# ------------------------------------------------------------------ one model served (in-process engine)
async def test_readyz_lists_the_served_models(served: Gateway, client: httpx.AsyncClient) -> None:
    assert (await client.get("/readyz")).json() == {"status": "ready", "models": [MODEL]}


async def test_non_streamed_completion_passes_the_engine_reply_through(
    served: Gateway, client: httpx.AsyncClient
) -> None:
    response = await client.post("/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 3})
    assert response.status_code == 200
    assert response.json()["usage"]["completion_tokens"] == 3
    assert response.headers["x-request-id"]


async def test_streaming_chat_is_relayed_byte_for_byte_and_ends_with_done(
    served: Gateway, client: httpx.AsyncClient
) -> None:
    response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    engine = served.supervisor.replicas[0].client
    assert engine is not None
    direct = await engine.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.text == direct.text
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == " t0"


async def test_a_request_without_model_goes_to_the_current_model(served: Gateway, client: httpx.AsyncClient) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.json()["model"] == MODEL


async def test_models_lists_served_models_in_openai_format(served: Gateway, client: httpx.AsyncClient) -> None:
    ready_replica(served, OTHER, "r1", target=False)
    listing = (await client.get("/v1/models")).json()
    assert listing["object"] == "list"
    assert [entry["id"] for entry in listing["data"]] == [MODEL, OTHER]
    entry = listing["data"][0]
    assert entry["object"] == "model" and entry["owned_by"] == "llf"
    assert entry["max_model_len"] == 256 and entry["replicas"] == 1


async def test_unknown_model_is_a_404_in_openai_format_naming_the_served_models(
    served: Gateway, client: httpx.AsyncClient
) -> None:
    response = await client.post("/v1/chat/completions", json={**CHAT, "model": "nobody/there"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
    assert "nobody/there" in error["message"] and MODEL in error["message"]


async def test_a_starting_model_is_503_with_retry_after(served: Gateway, client: httpx.AsyncClient) -> None:
    served.supervisor.replicas[0].state = "starting"
    response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "not ready yet" in response.json()["error"]["message"]


async def test_metrics_count_requests_tokens_and_time_to_first_token(
    served: Gateway, client: httpx.AsyncClient
) -> None:
    await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    await client.post("/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 3})
    await client.post("/v1/completions", json={"model": "who/else", "prompt": "x"})
    await client.post("/v1/completions", json={"model": MODEL, "prompt": []})
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'llf_gateway_requests_total{endpoint="/v1/chat/completions",model="test/tiny",status="200"} 1.0' in text
    assert 'llf_gateway_requests_total{endpoint="/v1/completions",model="-",status="404"} 1.0' in text
    assert 'llf_gateway_requests_total{endpoint="/v1/completions",model="test/tiny",status="400"} 1.0' in text
    assert 'llf_gateway_tokens_generated_total{model="test/tiny"} 7.0' in text  # 4 streamed + 3 from usage
    assert 'llf_gateway_time_to_first_token_seconds_count{model="test/tiny"} 1.0' in text
    assert 'llf_gateway_replicas{state="ready"} 1.0' in text
    assert 'llf_gateway_replicas{state="failed"} 0.0' in text


async def test_engine_metrics_are_passed_through_per_replica(served: Gateway, client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics/engine/r0")
    assert response.status_code == 200 and "vllm:fake_metric" in response.text
    assert (await client.get("/metrics/engine/r99")).status_code == 404
    served.supervisor.replicas[0].state = "restarting"
    restarting = await client.get("/metrics/engine/r0")
    assert restarting.status_code == 503 and "restarting" in restarting.json()["error"]["message"]


# ------------------------------------------------------------------ the domain, called directly
async def test_complete_counts_a_refusal_under_dash_for_a_model_nobody_serves(served: Gateway) -> None:
    with pytest.raises(Exception, match="not served"):
        await served.complete("/v1/completions", b'{"model": "a/b", "prompt": "x"}', 0.0)
    assert 'model="-",status="404"' in served.exposition().decode()
