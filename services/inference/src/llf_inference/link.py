"""How the data plane reaches an engine: one POST of bytes, the answer's head, its body as it arrives.

The relay sends every OpenAI request through a replica's ``link``. In production that is a
``TransportLink``: the request's head is joined from bytes prepared when the engine started (its
``Host``, its per-start key) and goes straight to the replica's ``EngineTransport`` — building an
``httpx.Request`` and going through ``AsyncClient.send`` (URL merging, auth and redirect flows,
cookie extraction, ``httpx.Response``) cost more of the gateway's time to first token than the rest
of its per-request work together (benchmark #1). ``ClientLink`` sends through any ``httpx.AsyncClient``
instead: the unit tests' in-process fake engine (``httpx.ASGITransport``). Both raise httpx's
exceptions, so the relay's failure contract is the same on either.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from typing import Protocol

import httpx

from llf_inference.transport import EngineTransport


class Upstream(Protocol):
    """An engine's answer: read ``stream`` to its end or ``aclose`` it (the connection is reused only then)."""

    status_code: int

    @property
    def content_type(self) -> str: ...

    @property
    def stream(self) -> AsyncIterable[bytes]: ...

    async def aread(self) -> bytes: ...

    async def aclose(self) -> None: ...


class EngineLink(Protocol):
    """POST ``body`` to ``path`` on one engine, with ``headers`` added to the link's own."""

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Upstream: ...


class TransportLink:
    """The production link: request heads from prepared bytes, sent on the replica's ``EngineTransport``."""

    def __init__(
        self,
        transport: EngineTransport,
        base_url: str,
        headers: Mapping[str, str],
        *,
        connect_timeout_s: float | None,
        read_timeout_s: float | None,
    ) -> None:
        url = httpx.URL(base_url)
        self.transport = transport
        self.origin = (url.host, url.port or 80)
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        host = url.host if url.port is None else f"{url.host}:{url.port}"
        fixed = {"host": host, **headers}
        self._fixed = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in fixed.items())

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Upstream:
        # A value with a line break would end the head early and smuggle headers (or a request) in:
        # such a header is left out, as httpx refuses it.
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items() if _plain(value))
        message = b"".join(
            (
                b"POST " + path.encode("ascii") + b" HTTP/1.1\r\n",
                self._fixed,
                extra.encode("latin-1"),
                b"content-length: %d\r\n\r\n" % len(body),
                body,
            )
        )
        return await self.transport.exchange(self.origin, message, self.connect_timeout_s, self.read_timeout_s)


def _plain(value: str) -> bool:
    return "\r" not in value and "\n" not in value and "\0" not in value


class ClientLink:
    """A link through an ``httpx.AsyncClient`` (its base URL, headers and timeouts)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Upstream:
        request = self.client.build_request("POST", path, content=body, headers=dict(headers))
        return _ClientAnswer(await self.client.send(request, stream=True))


class _ClientAnswer:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status_code = response.status_code

    @property
    def content_type(self) -> str:
        return str(self.response.headers.get("content-type", ""))

    @property
    def stream(self) -> AsyncIterable[bytes]:
        return self.response.aiter_raw()

    async def aread(self) -> bytes:
        return await self.response.aread()

    async def aclose(self) -> None:
        await self.response.aclose()
