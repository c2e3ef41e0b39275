"""Answers that outlive the handler: a stream that waits for its model to load, and a model lease.

A streaming request for a model that is loading gets its ``200 text/event-stream`` headers at
once and then an SSE comment line every few seconds (``: loading MODEL 12 s``) until the
engine answers: OpenAI clients ignore comments, and proxies see bytes flowing instead of an
idle connection they would time out. Once the model is ready the engine's own stream follows
on the same response; if the load fails, one final ``data: {"error": ...}`` event says why
(the status line is already sent, so the error cannot be an HTTP status).

A request holds its model (a ``Lease``) until its answer is fully sent, streams included, so
that neither eviction nor the idle unload can stop an engine under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable

from llf_common.errors import LLFError
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from llf_inference.relay import error_event

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class Releasing(Response):
    """``inner`` sent as is, then ``release()`` (also when the client goes away or sending fails)."""

    def __init__(self, inner: Response, release: Callable[[], None]) -> None:
        self.inner = inner
        self.release = release
        self.status_code = inner.status_code
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            self.release()


class LoadingStream(Response):
    """SSE comments while ``answer`` (the load, then the engine's reply) is awaited, then that reply.

    ``answer`` is started only when the response is sent; ``on_done`` runs once the response
    ends, however it ends (the caller's lease release).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        model: str,
        answer: Callable[[], Awaitable[Response]],
        *,
        interval_s: float = 5.0,
        on_done: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.model = model
        self.answer = answer
        self.interval_s = interval_s
        self.on_done = on_done
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = self.clock()
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        task = asyncio.ensure_future(self.answer())
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            while not task.done():
                await _body(send, f": loading {self.model} {self.clock() - started:.0f} s\n\n".encode())
                await asyncio.wait((task, watcher), timeout=self.interval_s, return_when=asyncio.FIRST_COMPLETED)
                if watcher.done() and not task.done():  # the client is gone: stop waiting for it
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                    return
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            try:
                reply = task.result()
            except LLFError as exc:
                await _body(send, _error(exc.detail, exc.code), more=False)
                return
            except Exception as exc:  # a bug: still end the stream with a readable event
                message = f"internal error while loading {self.model}: {exc!r}"
                await _body(send, _error(message, "internal"), more=False)
                raise
            await _continue(reply, scope, receive, send)
        finally:
            watcher.cancel()
            if not task.done():
                task.cancel()
            if self.on_done is not None:
                self.on_done()


async def _continue(reply: Response, scope: Scope, receive: Receive, send: Send) -> None:
    """Send ``reply`` on a response whose status line and headers are already out."""
    if reply.media_type == "text/event-stream" and reply.status_code == 200:

        async def body_only(message: Message) -> None:
            if message["type"] != "http.response.start":
                await send(message)

        await reply(scope, receive, body_only)
        return
    # Not a stream (the engine refused the request, e.g. a 400 for a prompt too long): its
    # body becomes the final error event, as an engine failing mid-stream would send it.
    await _body(send, _as_error_event(bytes(reply.body), reply.status_code), more=False)


def _as_error_event(body: bytes, status: int) -> bytes:
    with contextlib.suppress(ValueError):
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            return b"data: " + json.dumps(parsed).encode() + b"\n\n"
        if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            return _error(parsed["message"], str(parsed.get("code") or status))
    return _error(body.decode("utf-8", "replace")[:1000] or f"the engine answered {status}", str(status))


def _error(message: str, code: str) -> bytes:
    return error_event(message, code)


async def _body(send: Send, chunk: bytes, *, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": more})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
