"""Relay a request to an engine and its answer back, streaming raw SSE bytes untouched.

The stream is never parsed: each chunk the transport reads is one ASGI message out, taken
from the response's byte stream itself (not ``aiter_raw``, whose generator layers cost more per
token than the rest of the loop), so the gateway adds a memcpy and a few attribute lookups per token. The response is a
plain ASGI callable (not ``StreamingResponse`` in a middleware stack) so that it can run the
one extra task it needs: a watcher for the client's disconnect, which cancels the upstream
read and closes the engine connection (vLLM then aborts the generation).

Failure contract: if the engine dies or stalls mid-stream, the client gets one final
``data: {"error": {...}}`` event and the stream closes — never a hang, never a half event.
Before any byte was sent, the same failure is a 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
from llf_common.errors import Unavailable
from llf_common.logging import request_id_var
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from llf_inference.link import Upstream
from llf_inference.metrics import Metrics
from llf_inference.replica import Replica
from llf_inference.routing.responses import ResponseMap

RESPONSES = "/v1/responses"
"""The endpoint whose answers' ids are remembered (``previous_response_id`` routes back to them)."""
_USAGE = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class EngineGone(Exception):
    """The replica's engine died while a request was on it (raised into the relay task)."""


def error_event(message: str, code: str = "engine_unavailable") -> bytes:
    payload = {"error": {"message": message, "type": "server_error", "code": code}}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


class Relay:
    """Sends requests to replicas; one per app (it holds the metrics)."""

    def __init__(self, metrics: Metrics, retry_after: int = 2, responses: ResponseMap | None = None) -> None:
        self.metrics = metrics
        self.retry_after = retry_after
        self.responses = responses if responses is not None else ResponseMap()

    async def forward(
        self,
        replica: Replica,
        endpoint: str,
        raw: bytes,
        stream: bool,
        started: float,
        content_type: str = "application/json",
    ) -> Response:
        """Send ``raw`` to ``replica`` and answer with its reply; the replica is released when done."""
        link = replica.link
        if link is None:
            raise Unavailable(
                f"the engine for {replica.model} is not running; retry shortly", retry_after=self.retry_after
            )
        headers = {"content-type": content_type}
        request_id = request_id_var.get()
        if request_id:
            headers["x-request-id"] = request_id
        replica.acquire()
        self.metrics.in_flight.labels(replica.model).inc()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                replica.release()
                self.metrics.in_flight.labels(replica.model).dec()

        try:
            upstream: Upstream = await _until_dead(replica, link.post(endpoint, raw, headers))
            if not stream or upstream.status_code != 200 or "event-stream" not in upstream.content_type:
                body = await _until_dead(replica, upstream.aread())
                await upstream.aclose()
                release()
                self._count(replica, endpoint, upstream.status_code, body)
                if endpoint == RESPONSES and upstream.status_code == 200:
                    self.responses.seen(body, replica.id)
                return Response(body, upstream.status_code, media_type=upstream.content_type or None)
        except (httpx.HTTPError, EngineGone) as exc:
            release()
            self.metrics.requests.labels(endpoint, replica.model, "503").inc()
            raise Unavailable(
                f"the engine for {replica.model} is unavailable ({_reason(exc)}); retry shortly",
                retry_after=self.retry_after,
            ) from None
        except BaseException:
            release()
            raise
        return SSERelayResponse(self, replica, endpoint, upstream, started, release)

    def _count(self, replica: Replica, endpoint: str, status: int, body: bytes) -> None:
        self.metrics.requests.labels(endpoint, replica.model, str(status)).inc()
        if status == 200:
            match = _USAGE.search(body)
            if match:
                tokens = int(match.group(1))
                self.metrics.for_model(replica.model).tokens.inc(tokens)
                replica.tokens.add(tokens)


class SSERelayResponse(Response):
    """An ASGI response copying an engine's event stream chunk by chunk.

    A ``Response`` subclass only so that FastAPI passes it through; it sends everything itself.
    """

    media_type = "text/event-stream"

    def __init__(
        self, relay: Relay, replica: Replica, endpoint: str, upstream: Upstream, started: float, release: Any
    ) -> None:
        self.status_code = 200
        self.background = None
        self.relay = relay
        self.replica = replica
        self.endpoint = endpoint
        self.upstream = upstream
        self.started = started
        self.release = release
        self.events = 0
        self.tail = b""
        self.headers_sent = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = "200"
        pump = asyncio.ensure_future(self._pump(send))
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        self.replica.streams.add(pump)
        try:
            await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
            if not pump.done():  # the client went away: stop reading, close the engine connection
                status = "499"
                pump.cancel()
                await asyncio.wait((pump,))
            elif pump.cancelled():  # the replica cancelled us: its engine died or was stopped
                status = "502"
                await self._end_with_error(send, f"the engine for {self.replica.model} stopped mid-stream")
            elif (failure := pump.result()) is not None:
                status = "502"
                await self._end_with_error(send, failure)
        finally:
            pump.cancel()
            watcher.cancel()
            self.replica.streams.discard(pump)
            await self.upstream.aclose()
            self.release()
            self._account(status)

    async def _pump(self, send: Send) -> str | None:
        """Copy chunks; return None at a clean end, else why the engine stream broke."""
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        self.headers_sent = True
        model_metrics = self.relay.metrics.for_model(self.replica.model)
        meter = self.replica.tokens
        watch_id = 4 if self.endpoint == RESPONSES else 0  # the id is in the first events
        last: float | None = None
        chunk = b""
        try:
            async for chunk in self.upstream.stream:
                now = time.monotonic()
                # The chunk goes out first: the bookkeeping below is not on the way to the client.
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self.tail = chunk
                if last is None:
                    model_metrics.ttft.observe(now - self.started)
                else:
                    model_metrics.itl.observe(now - last)
                last = now
                count = chunk.count(b"data:")
                self.events += count
                meter.add(count, now)
                if watch_id:
                    watch_id = 0 if self.relay.responses.seen(chunk, self.replica.id) else watch_id - 1
        except httpx.HTTPError as exc:
            self.tail = chunk
            return f"the engine for {self.replica.model} stopped mid-stream ({_reason(exc)})"
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return None

    async def _end_with_error(self, send: Send, message: str) -> None:
        if not self.headers_sent:
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            self.headers_sent = True
        prefix = b"" if not self.tail or self.tail.endswith(b"\n\n") else b"\n\n"
        await send({"type": "http.response.body", "body": prefix + error_event(message), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _account(self, status: str) -> None:
        metrics = self.relay.metrics
        metrics.requests.labels(self.endpoint, self.replica.model, status).inc()
        match = _USAGE.search(self.tail)
        tokens = (
            int(match.group(1)) if match else max(0, self.events - 1 - (self.endpoint.endswith("chat/completions")))
        )
        if tokens:
            metrics.for_model(self.replica.model).tokens.inc(tokens)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _until_dead(replica: Replica, awaitable: Any) -> Any:
    """Await ``awaitable`` unless the replica's engine dies first (then ``EngineGone``)."""
    task = asyncio.ensure_future(awaitable)
    replica.streams.add(task)
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if replica.dead.is_set() and not (current is not None and current.cancelling()):
            raise EngineGone("engine died") from None
        raise
    finally:
        replica.streams.discard(task)
        task.cancel()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, EngineGone):
        return "it stopped"
    name = type(exc).__name__
    text = str(exc)
    return f"{name}: {text}" if text else name
