"""Fixtures of the web pages' unit tests: the app over fake services, no server, no subprocess.

``FakeServices`` answers the gateway's and the registry's routes the pages use (through
``httpx.MockTransport``) and records every request, so a test can see what was forwarded and
with which key. The app under test is reached over ``httpx.ASGITransport``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from llf_web.app import create_app
from llf_web.settings import WebSettings
from llf_web.upstream import Parts, Upstream

from tests.support.env import isolate_env

KEY = "s3cret-key"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No developer's ~/.llf, keys or URLs leak into a test."""
    isolate_env(monkeypatch, tmp_path / "home")
    yield


def sse(*events: Any) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        for event in events:
            if isinstance(event, bytes):
                yield event
            else:
                yield f"data: {json.dumps(event)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return body()


class FakeServices:
    """The gateway and the registry, as far as the pages go; replies can be overridden per route."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.overrides: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]] = {}

    def handler(self, service: str) -> Callable[[httpx.Request], httpx.Response]:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            key = (service, f"{request.method} {request.url.path}")
            if key in self.overrides:
                return self.overrides[key](request)
            return self.default(service, request)

        return handle

    def default(self, service: str, request: httpx.Request) -> httpx.Response:
        route = f"{request.method} {request.url.path}"
        if route == "GET /healthz":
            return httpx.Response(200, json={"status": "ok"})
        if service == "gateway":
            if route == "GET /v1/models":
                return httpx.Response(200, json={"object": "list", "data": [{"id": "a/b", "state": "loaded"}]})
            if route == "POST /v1/chat/completions":
                chunk = {"model": "a/b", "choices": [{"delta": {"content": "<script>alert(1)</script>"}}]}
                return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(chunk))
            if route == "GET /v1/status":
                return httpx.Response(200, json={"state": "ready", "models": ["a/b"], "replicas": []})
            if route == "POST /v1/serve":
                return httpx.Response(202, json={"state": "loading", "target": "a/b"})
            if re.fullmatch(r"DELETE /v1/serve/.+", route):
                return httpx.Response(404, json={"error": {"message": "model x/y is not loaded", "code": "not_found"}})
        else:
            if route == "GET /v1/models":
                return httpx.Response(200, json=[{"name": "a/b", "size_bytes": 10, "verified": True, "served": True}])
            if route == "POST /v1/pulls":
                return httpx.Response(
                    202,
                    json={"state": "queued", "repo": "a/b", "revision": "main", "sha": "0" * 40, "job_id": "pull-a--b"},
                )
            if route == "GET /v1/jobs/pull-a--b/events":
                job = {"id": "pull-a--b", "state": "finished", "progress": {"bytes_done": 5, "bytes_total": 5}}
                return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(job))
            if route == "DELETE /v1/models/a/b":
                return httpx.Response(409, json={"detail": "a/b is served by the gateway"})
        return httpx.Response(404, json={"detail": f"fake {service}: no route {route}"})


Build = Callable[..., httpx.AsyncClient]


@pytest.fixture
def services() -> FakeServices:
    return FakeServices()


@pytest.fixture
async def web(services: FakeServices) -> AsyncIterator[Build]:
    """``await web(api_key=None)`` -> a client of the app over ASGITransport, on http://web.test."""
    clients: list[httpx.AsyncClient] = []

    def build(api_key: str | None = None) -> httpx.AsyncClient:
        settings = WebSettings.load(**({"api_key": api_key} if api_key else {}))
        parts = Parts(
            gateway=Upstream(
                "gateway",
                "http://gateway.test",
                api_key=settings.api_key,
                transport=httpx.MockTransport(services.handler("gateway")),
            ),
            registry=Upstream(
                "registry",
                "http://registry.test",
                api_key=settings.api_key,
                transport=httpx.MockTransport(services.handler("registry")),
            ),
        )
        app = create_app(settings, parts)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://web.test")
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()
