"""The HTTP/1.1 transport from the gateway to its engines: pooled connections, no pool scan.

Why not httpx's default transport: httpcore's pool re-examines every connection it holds on
each request and at each response's end (``_assign_requests_to_connections``: per idle
connection a readability poll through anyio and a count over all connections), and parses with
pure-Python h11. With 32 streams in flight that cost the gateway more CPU per request than
vllm-router spends on the whole request (benchmark #1), and on a machine whose cores the engine
fills, gateway CPU is time to first token. This transport keeps what the gateway uses of httpx —
the same ``AsyncClient`` API, its timeouts and its exceptions, so the relay's failure contract
does not change — on an asyncio protocol feeding httptools' C parser (uvicorn's own): idle
connections on a stack (the most recently used first), reused while younger than
``keepalive_s``, one request per connection at a time, and a connection closed whenever its
response was not read to the end (for a stream: vLLM then aborts the generation). The read
timeout costs no timer per chunk: one timer per connection, re-armed only when it fires early.

A request that finds its reused connection already closed by the engine (an idle keep-alive
the engine dropped, before any response byte) is sent once more on a new connection.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import httptools
import httpx

KEEPALIVE_S = 4.0
"""How long an idle connection is reused: under the 5 s after which uvicorn (vLLM's server) drops it."""
PAUSE_BYTES = 1 << 20
"""Body bytes read ahead of the relay before the engine connection stops being read (back-pressure)."""

ProtocolFactory = Callable[[], asyncio.Protocol]
Connector = Callable[[ProtocolFactory, str, int], Awaitable[tuple[asyncio.BaseTransport, asyncio.BaseProtocol]]]


async def open_tcp(
    factory: ProtocolFactory, host: str, port: int
) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
    return await asyncio.get_running_loop().create_connection(factory, host, port)


class _Stale(Exception):
    """The engine had closed a reused connection before answering: safe to send again."""


class _Response:
    """httptools' callbacks for one response: head, body pieces, end."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.done = False
        self.keep_alive = False
        self.pieces: list[bytes] = []
        self.buffered = 0
        self.received = 0
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self.done = True
        self.keep_alive = self.parser.should_keep_alive()

    def ends_at_eof(self) -> bool:
        """A body without length or chunking ends when the connection does."""
        names = {name.lower() for name, _ in self.headers}
        return self.head_done and b"content-length" not in names and b"transfer-encoding" not in names

    def take(self) -> bytes:
        data = self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)
        self.pieces.clear()
        self.buffered = 0
        return data


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: feeds what arrives to the current response's parser and wakes its reader."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.response: _Response | None = None
        self.error: httpx.HTTPError | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._wait_started = 0.0
        self._timeout: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        # Kept, not asked for per token: on Python 3.11 ``get_running_loop`` costs a getpid() system
        # call. A protocol is made by its loop (``create_connection``), so that loop is running here.
        self._loop = asyncio.get_running_loop()

    # ------------------------------------------------------------- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes nobody asked for: the connection cannot be trusted any more
            self.close()
            return
        response.received += len(data)
        try:
            response.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = httpx.RemoteProtocolError(f"the engine sent a malformed response: {exc}")
            self.close()
        if response.buffered > PAUSE_BYTES and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self._wake()

    # ------------------------------------------------------------- for the transport
    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def consumed(self) -> None:
        """The reader took the buffered body: read from the engine again if that had stopped."""
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    async def wait(self, timeout: float | None) -> None:
        """Until something arrives or the connection ends; ``TimeoutError`` after ``timeout`` s of silence."""
        loop = self._loop
        self._waiter = loop.create_future()
        self._wait_started = loop.time()
        self._timeout = timeout
        if timeout is not None:
            due = self._wait_started + timeout
            if self._timer is not None and self._timer.when() > due:
                self._cancel_timer()
            if self._timer is None:
                self._timer = loop.call_at(due, self._check_timeout)
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _check_timeout(self) -> None:
        self._timer = None
        waiter, timeout = self._waiter, self._timeout
        if waiter is None or waiter.done() or timeout is None:
            return  # nobody is waiting: the next wait arms the timer again
        loop = self._loop
        due = self._wait_started + timeout
        if loop.time() >= due:
            waiter.set_exception(TimeoutError())
        else:  # the current wait started after the timer was armed
            self._timer = loop.call_at(due, self._check_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Answer:
    """An engine's answer whose head is in: status, raw headers, and the body as it arrives (``stream``).

    ``stream`` must be read to its end, or ``aclose`` called, for the connection to be reused.
    """

    def __init__(self, status_code: int, headers: list[tuple[bytes, bytes]], stream: _Body) -> None:
        self.status_code = status_code
        self.headers = headers
        self.stream = stream

    @property
    def content_type(self) -> str:
        for name, value in self.headers:
            if name.lower() == b"content-type":
                return value.decode("latin-1")
        return ""

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.stream])

    async def aclose(self) -> None:
        await self.stream.aclose()


class EngineTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 to one engine (or a few origins), on pooled asyncio connections.

    ``connect`` opens a connection to (host, port) for a protocol, as ``loop.create_connection``
    does (the default, TCP); a Unix socket is a connector too. Tests hand in their own (a
    socket pair), so no server is needed.
    """

    def __init__(self, *, connect: Connector = open_tcp, keepalive_s: float = KEEPALIVE_S, max_idle: int = 256) -> None:
        self._connect = connect
        self.keepalive_s = keepalive_s
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        message = _head(request) + await request.aread()
        origin = (request.url.host, request.url.port or 80)
        answer = await self.exchange(origin, message, timeouts.get("connect"), timeouts.get("read"), request)
        return httpx.Response(
            answer.status_code, headers=answer.headers, stream=answer.stream, extensions={"http_version": b"HTTP/1.1"}
        )

    async def exchange(
        self,
        origin: tuple[str, int],
        message: bytes,
        connect_timeout: float | None,
        read_timeout: float | None,
        request: httpx.Request | None = None,
    ) -> Answer:
        """Send one whole request (head and body, as bytes) to ``origin``; return once the answer's head is in.

        The relay's path (``link.TransportLink``): no ``httpx.Request``/``Response`` per call.
        Failures are httpx's exceptions all the same (``request`` is only what they name).
        """
        while True:
            connection = await self._take(origin, request, connect_timeout)
            response = connection.response = _Response()
            try:
                assert connection.transport is not None
                connection.transport.write(message)
                while not response.head_done:
                    await _receive(connection, response, request, read_timeout)
            except _Stale:
                connection.close()
                continue
            except BaseException:
                connection.close()
                raise
            body = _Body(self, origin, connection, response, request, read_timeout)
            return Answer(response.parser.get_status_code(), response.headers, body)

    async def _take(self, origin: tuple[str, int], request: httpx.Request | None, timeout: float | None) -> _Connection:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle and (now - idle[0].idle_since >= self.keepalive_s or not idle[0].usable()):
            idle.popleft().close()
        while idle:
            connection = idle.pop()
            if connection.usable():
                connection.reused = True
                return connection
            connection.close()
        try:
            async with asyncio.timeout(timeout):
                _, protocol = await self._connect(_Connection, *origin)
        except TimeoutError:
            raise httpx.ConnectTimeout("timed out connecting to the engine", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to the engine: {exc}", request=request) from None
        return cast(_Connection, protocol)

    def _give_back(self, origin: tuple[str, int], connection: _Connection) -> None:
        idle = self._idle.setdefault(origin, deque())
        if len(idle) >= self.max_idle:
            idle.popleft().close()
        connection.response = None
        connection.reused = False
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()


async def _receive(
    connection: _Connection, response: _Response, request: httpx.Request | None, timeout: float | None
) -> None:
    """Wait until more of ``response`` arrived (the caller looks at what); at the connection's end,
    end an until-close body, or raise: ``_Stale`` for a reused connection that got no byte."""
    if connection.error is not None:
        raise connection.error
    if not connection.closed:
        try:
            await connection.wait(timeout)
        except TimeoutError:
            raise httpx.ReadTimeout("timed out waiting for the engine", request=request) from None
        if connection.error is not None:
            raise connection.error
        return
    if response.done or response.pieces:
        return
    if connection.reused and response.received == 0:
        raise _Stale
    if response.ends_at_eof():
        response.done, response.keep_alive = True, False
        return
    raise httpx.RemoteProtocolError("the engine closed the connection before the end of its response", request=request)


class _Body(httpx.AsyncByteStream):
    """The response body as it arrives; the connection goes back to the pool only after a complete read."""

    def __init__(
        self,
        transport: EngineTransport,
        origin: tuple[str, int],
        connection: _Connection,
        response: _Response,
        request: httpx.Request | None,
        timeout: float | None,
    ) -> None:
        self.transport = transport
        self.origin = origin
        self.connection: _Connection | None = connection
        self.response = response
        self.request = request
        self.timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        response, connection = self.response, self.connection
        if connection is None:
            raise httpx.StreamClosed()
        while True:
            if response.pieces:
                data = response.take()
                connection.consumed()
                yield data
                # While the reader was away, more may have arrived, the end included, and reading
                # may have paused again: take that first, never wait for bytes a paused read won't bring.
                continue
            if response.done:
                return
            await _receive(connection, response, self.request, self.timeout)

    async def aclose(self) -> None:
        connection, self.connection = self.connection, None
        if connection is None:
            return
        if self.response.done and self.response.keep_alive and connection.usable():
            self.transport._give_back(self.origin, connection)
        else:
            connection.close()


def _head(request: httpx.Request) -> bytes:
    lines = [request.method.encode() + b" " + request.url.raw_path + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in request.headers.raw]
    return b"\r\n".join(lines) + b"\r\n\r\n"
