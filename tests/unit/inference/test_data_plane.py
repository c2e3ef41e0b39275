"""The relay endpoints served as plain ASGI (``api.data_plane``) keep the contract the routes had.

Through the real app (``create_app``) over ``httpx.ASGITransport``: the shared middlewares still
wrap the data plane (request id, body limit, the logged 500), the API key guards every relay
path, a method other than POST is 405, and the OpenAPI document still lists every path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from llf_inference.api.data_plane import SUMMARIES, DataPlane
from llf_inference.app import create_app
from llf_inference.gateway import FORM_ENDPOINTS, Gateway
from llf_inference.settings import InferenceSettings
from starlette.types import Message

from tests.support.fake_gateway import MODEL
from tests.unit.inference.fakes import FakeResolver, ready_replica

pytestmark = pytest.mark.anyio
MakeSettings = Callable[..., InferenceSettings]
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
def served(make_settings: MakeSettings) -> Gateway:
    gateway = Gateway(make_settings(api_key="s3cret"), resolver=FakeResolver())
    ready_replica(gateway, MODEL)
    return gateway


@pytest.fixture
async def client(served: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(served.settings, served), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


KEY = {"Authorization": "Bearer s3cret"}


@pytest.mark.parametrize("path", sorted(SUMMARIES))
async def test_every_relay_path_needs_the_key(client: httpx.AsyncClient, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        response = await client.post(path, json=CHAT, headers=headers)
        assert response.status_code == 401, (path, headers)
        assert "API key" in response.json()["error"]["message"]


async def test_with_the_key_a_chat_is_relayed_and_carries_a_request_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=CHAT, headers={**KEY, "X-Request-ID": "req-42"})
    assert response.status_code == 200 and response.json()["choices"]
    assert response.headers["x-request-id"] == "req-42"
    generated = await client.post("/v1/chat/completions", json=CHAT, headers=KEY)
    assert len(generated.headers["x-request-id"]) == 16


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_a_relay_path_takes_post_only(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/v1/chat/completions", headers=KEY)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_the_body_limit_still_holds_on_the_data_plane(make_settings: MakeSettings) -> None:
    gateway = Gateway(make_settings(max_body_bytes=1024), resolver=FakeResolver())
    ready_replica(gateway, MODEL)
    transport = httpx.ASGITransport(app=create_app(gateway.settings, gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit counts while reading
            for _ in range(4):
                yield b'{"pad": "' + b"x" * 500 + b'"}'

        response = await client.post("/v1/chat/completions", content=chunked())
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


async def test_an_unexpected_failure_is_a_logged_500_without_internals(
    client: httpx.AsyncClient, served: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(served, "complete", broken)
    response = await client.post("/v1/chat/completions", json=CHAT, headers=KEY)
    assert response.status_code == 500 and "secret" not in response.text
    assert response.json()["error"]["code"] == "internal_error"


async def test_other_paths_go_on_to_the_fastapi_routes(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/models", headers=KEY)).json()["object"] == "list"
    assert (await client.get("/v1/nothing", headers=KEY)).status_code == 404


async def test_a_client_gone_before_its_body_gets_no_answer_and_reaches_no_engine(served: Gateway) -> None:
    called: list[str] = []

    async def complete(*args: Any, **kwargs: Any) -> None:
        called.append("complete")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append("fastapi")

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        called.append(message["type"])

    served.complete = complete  # type: ignore[method-assign]
    plane = DataPlane(app, served, None)
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    await plane(scope, receive, send)
    assert called == []


async def test_multipart_paths_are_routed_by_the_forms_model(served: Gateway) -> None:
    seen: list[tuple[str, dict[str, str], str | None]] = []

    async def complete_form(path: str, raw: bytes, content_type: str, fields: dict[str, str], started: float,
                            session: str | None) -> Any:  # fmt: skip
        seen.append((path, fields, session))
        from starlette.responses import Response

        return Response(b"{}", media_type="application/json")

    served.complete_form = complete_form  # type: ignore[method-assign]
    transport = httpx.ASGITransport(app=create_app(served.settings, served))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=KEY) as client:
        response = await client.post(
            FORM_ENDPOINTS[0],
            data={"model": MODEL, "stream": "true"},
            files={"file": ("a.wav", b"RIFF....", "audio/wav")},
            headers={"X-Session-ID": "s1"},
        )
    assert response.status_code == 200
    assert seen == [(FORM_ENDPOINTS[0], {"model": MODEL, "stream": "true"}, "s1")]


def test_the_api_document_lists_every_relay_path(make_settings: MakeSettings) -> None:
    app = create_app(make_settings())
    document = app.openapi()
    for path, summary in SUMMARIES.items():
        operation = document["paths"][path]["post"]
        assert operation["summary"] == summary
        content = operation["requestBody"]["content"]
        assert ("multipart/form-data" if path in FORM_ENDPOINTS else "application/json") in content
        assert "text/event-stream" in operation["responses"]["200"]["content"]
    paths = document["paths"]
    assert paths["/v1/chat/completions"]["post"]["summary"].startswith("Chat completion (OpenAI)")
    assert paths["/v1/embeddings"]["post"]["summary"] == "vLLM's /v1/embeddings, relayed by the body's model."
    assert "OpenAIError" in document["components"]["schemas"]
    assert "/v1/models" in document["paths"] and "/v1/serve" in document["paths"]
