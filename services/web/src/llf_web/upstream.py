"""HTTP clients for the gateway and the registry: the only place the web service speaks to them.

The page never sees the services: each browser call is forwarded here with the service's own
key (``LLF_API_KEY``), and the service's reply goes back with its status and body unchanged, so
errors reach the user worded as the service words them. The transport is injectable so unit
tests run the whole app against fake services without a server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr


@dataclass(frozen=True)
class Reply:
    """A service's answer, as it was: status and JSON body (or a body we made when it was down)."""

    status: int
    body: Any


def unreachable(name: str, url: str, exc: Exception) -> Reply:
    """The reply when a service does not answer: 502, naming the service and its URL."""
    return Reply(502, {"detail": f"{name} not reachable at {url}: {type(exc).__name__}"})


class Upstream:
    """One service at ``base_url``; ``name`` is what messages call it."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        api_key: SecretStr | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"} if api_key else {}
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
        )

    async def call(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, str] | None = None
    ) -> Reply:
        """One request; the reply's status and JSON (or text) body, or 502 when unreachable."""
        try:
            response = await self.http.request(method, path, json=json_body, params=params)
        except httpx.HTTPError as exc:
            return unreachable(self.name, self.base_url, exc)
        if response.status_code == 204 or not response.content:
            return Reply(response.status_code, None)
        try:
            return Reply(response.status_code, response.json())
        except json.JSONDecodeError:
            return Reply(response.status_code, {"detail": response.text.strip()[:500]})

    async def up(self, path: str) -> bool:
        """Whether ``path`` (a health route) answers 2xx."""
        try:
            response = await self.http.get(path, timeout=3.0)
        except httpx.HTTPError:
            return False
        return response.is_success

    async def open_stream(self, method: str, path: str, *, json_body: Any = None) -> httpx.Response:
        """Start a streamed request; the caller reads ``aiter_raw`` and must ``aclose`` it.

        Raises ``httpx.HTTPError`` when the service cannot be reached.
        """
        request = self.http.build_request(
            method, path, json=json_body, timeout=httpx.Timeout(None, connect=self.http.timeout.connect)
        )
        return await self.http.send(request, stream=True)

    async def aclose(self) -> None:
        await self.http.aclose()


async def relay_bytes(response: httpx.Response) -> AsyncIterator[bytes]:
    """The service's bytes as they arrive; closing the generator (client gone) closes the service's."""
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    finally:
        await response.aclose()


@dataclass
class Parts:
    """The services behind the pages (tests pass fakes)."""

    gateway: Upstream
    registry: Upstream

    async def aclose(self) -> None:
        await self.gateway.aclose()
        await self.registry.aclose()
