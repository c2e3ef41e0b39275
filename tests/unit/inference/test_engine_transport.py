"""EngineTransport: httpx's client API over pooled asyncio connections to an engine.

No server: each connection the transport opens is one end of a socket pair, and the test plays
the engine on the other end (reads the request, writes a scripted response).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from llf_inference.transport import EngineTransport, ProtocolFactory

Opened = tuple[asyncio.BaseTransport, asyncio.BaseProtocol]
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
SSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class Engine:
    """The far ends of every connection the transport opened; each runs the next script."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = list(scripts)
        self.requests: list[bytes] = []
        self.connections = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self, factory: ProtocolFactory, host: str, port: int) -> Opened:
        ours, theirs = socket.socketpair()
        self.connections += 1
        reader, writer = await asyncio.open_connection(sock=theirs)
        self.tasks.append(asyncio.create_task(self._serve(reader, writer)))
        return await asyncio.get_running_loop().create_connection(factory, sock=ours)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests with the scripts in turn until the transport (or a script) closes the connection."""
        try:
            while self.scripts:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.lower().split(b"\r\n")
                length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), 0)
                self.requests.append(head + await reader.readexactly(length))
                await self.scripts.pop(0)(reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the transport closed its end
        finally:
            writer.close()


def answer(body: bytes, extra: bytes = b"") -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % len(body))
        writer.write(extra + b"\r\n" + body)
        await writer.drain()

    return script


def stream(*events: bytes, end: bool = True) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(SSE)
        for event in events:
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.sleep(0)
        if end:
            writer.write(b"0\r\n\r\n")
        else:
            writer.close()

    return script


def hang_up() -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    return script


def silent() -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    return script


async def client(engine: Engine, **transport: float) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url="http://127.0.0.1:8001",
        transport=EngineTransport(connect=engine.connect, **transport),  # type: ignore[arg-type]
        headers={"Authorization": "Bearer k"},
        timeout=httpx.Timeout(2.0, connect=1.0),
    ) as http:
        yield http


async def collect(http: httpx.AsyncClient, body: bytes = b'{"stream": true}') -> tuple[int, bytes]:
    request = http.build_request("POST", "/v1/chat/completions", content=body)
    response = await http.send(request, stream=True)
    try:
        return response.status_code, b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()


def test_a_stream_arrives_whole_and_its_connection_serves_the_next_request(run: Callable[..., object]) -> None:
    engine = Engine(stream(b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"), answer(b'{"ok": true}'))

    async def scenario() -> None:
        async for http in client(engine):
            assert await collect(http) == (200, b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n")
            reply = await http.get("/v1/models")
            assert reply.json() == {"ok": True}

    run(scenario())
    assert engine.connections == 1
    first = engine.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer k\r\n" in first and first.endswith(b'\r\n\r\n{"stream": true}')
    assert engine.requests[1].startswith(b"GET /v1/models HTTP/1.1\r\n")


def test_a_response_closed_before_its_end_closes_its_connection(run: Callable[..., object]) -> None:
    engine = Engine(stream(b"data: 1\n\n", b"data: 2\n\n"), answer(b"{}"))

    async def scenario() -> None:
        async for http in client(engine):
            request = http.build_request("POST", "/v1/chat/completions", content=b"{}")
            response = await http.send(request, stream=True)
            async for _ in response.aiter_raw():
                break
            await response.aclose()  # the client went away: the engine must see the connection close
            await engine.tasks[0]
            assert (await http.get("/health")).status_code == 200

    run(scenario())
    assert engine.connections == 2


def test_an_engine_that_dies_mid_stream_is_an_httpx_error(run: Callable[..., object]) -> None:
    engine = Engine(stream(b"data: 1\n\n", end=False))

    async def scenario() -> None:
        async for http in client(engine):
            with pytest.raises(httpx.RemoteProtocolError):
                await collect(http)

    run(scenario())


def test_an_idle_connection_the_engine_dropped_is_replaced_transparently(run: Callable[..., object]) -> None:
    engine = Engine(answer(b"{}"), hang_up(), answer(b'{"second": 1}'))

    async def scenario() -> None:
        async for http in client(engine):
            assert (await http.get("/health")).status_code == 200
            # The engine closes the kept-alive connection as soon as the next request reaches it.
            assert (await http.get("/v1/models")).json() == {"second": 1}

    run(scenario())
    assert engine.connections == 2


def test_connections_idle_past_the_keepalive_are_not_reused(run: Callable[..., object]) -> None:
    engine = Engine(answer(b"{}"), answer(b"{}"))

    async def scenario() -> None:
        async for http in client(engine, keepalive_s=0.0):
            await http.get("/health")
            engine.scripts.insert(0, answer(b"{}"))  # the new connection's script
            await http.get("/health")

    run(scenario())
    assert engine.connections == 2


def test_a_silent_engine_is_a_read_timeout(run: Callable[..., object]) -> None:
    engine = Engine(silent())

    async def scenario() -> None:
        async for http in client(engine):
            with pytest.raises(httpx.ReadTimeout):
                await http.get("/health", timeout=0.2)

    run(scenario())


def test_an_engine_that_is_not_listening_is_a_connect_error(run: Callable[..., object]) -> None:
    async def refused(factory: ProtocolFactory, host: str, port: int) -> Opened:
        raise ConnectionRefusedError(111, "Connection refused")

    async def scenario() -> None:
        transport = EngineTransport(connect=refused)
        async with httpx.AsyncClient(base_url="http://127.0.0.1:9", transport=transport) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get("/health")

    run(scenario())


def test_a_connection_close_answer_is_not_kept(run: Callable[..., object]) -> None:
    engine = Engine(answer(b"{}", extra=b"connection: close\r\n"), answer(b"{}"))

    async def scenario() -> None:
        async for http in client(engine):
            await http.get("/health")
            engine.scripts.insert(0, answer(b"{}"))
            await http.get("/health")

    run(scenario())
    assert engine.connections == 2


def test_a_body_larger_than_the_read_ahead_arrives_whole(run: Callable[..., object]) -> None:
    big = bytes(range(256)) * (3 << 12)  # 3 MiB: reading pauses and resumes on the way
    engine = Engine(answer(big))

    async def scenario() -> None:
        async for http in client(engine):
            assert (await http.get("/metrics")).content == big

    run(scenario())


def test_a_shorter_timeout_after_a_longer_one_still_fires_on_time(run: Callable[..., object]) -> None:
    engine = Engine(answer(b"{}"), silent())

    async def scenario() -> None:
        async for http in client(engine):
            await http.get("/health", timeout=30.0)  # arms the connection's timer 30 s ahead
            started = asyncio.get_running_loop().time()
            with pytest.raises(httpx.ReadTimeout):
                await http.get("/health", timeout=0.2)
            assert asyncio.get_running_loop().time() - started < 2.0

    run(scenario())


async def collect_slowly(http: httpx.AsyncClient, pause_s: float) -> bytes:
    """A reader that is busy elsewhere after each chunk (a relay sending to a slow client)."""
    request = http.build_request("POST", "/v1/chat/completions", content=b'{"stream": true}')
    response = await http.send(request, stream=True)
    pieces = []
    try:
        async for chunk in response.aiter_raw():
            pieces.append(chunk)
            await asyncio.sleep(pause_s)
    finally:
        await response.aclose()
    return b"".join(pieces)


def test_the_end_of_a_stream_that_arrives_while_its_reader_is_busy_is_not_lost(run: Callable[..., object]) -> None:
    events = [b"data: %d\n\n" % n for n in range(3)] + [b"data: [DONE]\n\n"]
    engine = Engine(stream(*events))

    async def scenario() -> None:
        async for http in client(engine):
            assert await collect_slowly(http, 0.05) == b"".join(events)

    run(scenario())


def test_a_stream_past_the_read_ahead_with_a_busy_reader_does_not_stall(run: Callable[..., object]) -> None:
    events = [bytes([65 + n % 26]) * (64 << 10) for n in range(48)]  # 3 MiB in 64 KiB events
    engine = Engine(stream(*events))

    async def scenario() -> None:
        async for http in client(engine):
            assert await collect_slowly(http, 0.005) == b"".join(events)

    run(scenario())
