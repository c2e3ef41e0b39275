"""The relay's links to an engine: TransportLink (prepared head bytes on the EngineTransport) and
ClientLink (any httpx client), with the same answers and the same httpx errors.

No server: the engine is the far end of a socket pair (``test_engine_transport.Engine``).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from llf_inference.link import ClientLink, EngineLink, TransportLink, Upstream
from llf_inference.transport import EngineTransport

from tests.unit.inference.test_engine_transport import Engine, answer, hang_up, silent, stream


def transport_link(engine: Engine, base_url: str = "http://127.0.0.1:8001") -> TransportLink:
    return TransportLink(
        EngineTransport(connect=engine.connect),
        base_url,
        {"Authorization": "Bearer k"},
        connect_timeout_s=1.0,
        read_timeout_s=0.5,
    )


def client_link(engine: Engine) -> ClientLink:
    transport = EngineTransport(connect=engine.connect)
    client = httpx.AsyncClient(
        base_url="http://127.0.0.1:8001", transport=transport, headers={"Authorization": "Bearer k"}, timeout=0.5
    )
    return ClientLink(client)


LINKS = {"transport": transport_link, "client": client_link}


async def read_all(upstream: Upstream) -> bytes:
    try:
        return b"".join([chunk async for chunk in upstream.stream])
    finally:
        await upstream.aclose()


def test_the_request_head_carries_host_key_length_and_the_callers_headers_and_the_body_unchanged(
    run: Callable[..., object],
) -> None:
    engine = Engine(answer(b'{"ok": true}'))
    body = b'{"model": "m", "x-unknown": [1, 2]}'

    async def scenario() -> tuple[int, str, bytes]:
        upstream = await transport_link(engine).post(
            "/v1/chat/completions", body, {"content-type": "application/json", "x-request-id": "abc"}
        )
        content = await upstream.aread()
        await upstream.aclose()
        return upstream.status_code, upstream.content_type, content

    assert run(scenario()) == (200, "application/json", b'{"ok": true}')
    head, _, sent = engine.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert set(lines[1:]) == {
        b"host: 127.0.0.1:8001",
        b"Authorization: Bearer k",
        b"content-type: application/json",
        b"x-request-id: abc",
        b"content-length: %d" % len(body),
    }
    assert sent == body


@pytest.mark.parametrize("kind", LINKS)
def test_a_stream_arrives_whole_and_the_connection_serves_the_next_request(
    kind: str, run: Callable[..., object]
) -> None:
    engine = Engine(stream(b"data: 1\n\n", b"data: [DONE]\n\n"), answer(b"{}"))
    link: EngineLink = LINKS[kind](engine)

    async def scenario() -> tuple[str, bytes, int]:
        upstream = await link.post("/v1/completions", b"{}", {"content-type": "application/json"})
        events = await read_all(upstream)
        second = await link.post("/v1/completions", b"{}", {})
        await second.aread()
        await second.aclose()
        return upstream.content_type, events, second.status_code

    assert run(scenario()) == ("text/event-stream", b"data: 1\n\ndata: [DONE]\n\n", 200)
    assert engine.connections == 1


@pytest.mark.parametrize("kind", LINKS)
def test_an_engine_that_dies_mid_stream_is_an_httpx_error(kind: str, run: Callable[..., object]) -> None:
    engine = Engine(stream(b"data: 1\n\n", end=False))
    link: EngineLink = LINKS[kind](engine)

    async def scenario() -> None:
        upstream = await link.post("/v1/completions", b"{}", {})
        with pytest.raises(httpx.RemoteProtocolError):
            await read_all(upstream)

    run(scenario())


@pytest.mark.parametrize("kind", LINKS)
def test_an_engine_that_hangs_up_or_stays_silent_is_an_httpx_error(kind: str, run: Callable[..., object]) -> None:
    engine = Engine(hang_up(), silent())
    link: EngineLink = LINKS[kind](engine)

    async def scenario() -> None:
        with pytest.raises(httpx.RemoteProtocolError):
            await link.post("/v1/completions", b"{}", {})
        with pytest.raises(httpx.ReadTimeout):
            await link.post("/v1/completions", b"{}", {})

    run(scenario())


def test_a_socket_base_url_names_the_engine_host_without_a_port(run: Callable[..., object]) -> None:
    engine = Engine(answer(b"{}"))

    async def scenario() -> None:
        upstream = await transport_link(engine, "http://engine").post("/tokenize", b"{}", {})
        await upstream.aread()
        await upstream.aclose()

    run(scenario())
    assert b"\r\nhost: engine\r\n" in engine.requests[0]


def test_a_header_value_with_a_line_break_is_left_out_and_smuggles_nothing(run: Callable[..., object]) -> None:
    engine = Engine(answer(b"{}"))

    async def scenario() -> None:
        headers = {"x-request-id": "abc\r\nx-injected: 1", "content-type": "application/json"}
        upstream = await transport_link(engine).post("/v1/completions", b"{}", headers)
        await upstream.aread()
        await upstream.aclose()

    run(scenario())
    head = engine.requests[0].partition(b"\r\n\r\n")[0].lower()
    assert b"x-injected" not in head and b"x-request-id" not in head
    assert b"\r\ncontent-type: application/json" in head
