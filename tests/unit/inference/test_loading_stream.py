"""A streaming request whose model loads: comment lines while it waits, then the engine's stream.

The responses are ASGI callables, driven here with a recording ``send`` and a scripted
``receive`` (no server); the clock is a counter, so the comment lines' seconds are exact.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from llf_common.errors import Unavailable
from llf_inference.loading import LoadingStream, Releasing
from starlette.responses import Response, StreamingResponse

pytestmark = pytest.mark.anyio
DEADLINE = 5.0


class Client:
    """Records what the response sends; ``leave()`` makes ``receive`` report a disconnect."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self.chunk = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        self.chunk.set()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def leave(self) -> None:
        self.gone.set()

    @property
    def body(self) -> str:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body").decode()

    async def next_chunk(self) -> None:
        self.chunk.clear()
        async with asyncio.timeout(DEADLINE):
            await self.chunk.wait()


def ticking() -> Any:
    now = [0.0]

    def clock() -> float:
        value = now[0]
        now[0] += 6.0
        return value

    return clock


async def run(response: Response, client: Client) -> None:
    async with asyncio.timeout(DEADLINE):
        await response({"type": "http"}, client.receive, client.send)


async def test_comments_flow_while_the_model_loads_then_the_engine_stream_follows() -> None:
    loaded = asyncio.Event()
    done: list[bool] = []

    async def answer() -> Response:
        await loaded.wait()

        async def tokens() -> Any:
            yield b'data: {"x": 1}\n\n'
            yield b"data: [DONE]\n\n"

        return StreamingResponse(tokens(), media_type="text/event-stream")

    client = Client()
    stream = LoadingStream("a/x", answer, interval_s=0.01, on_done=lambda: done.append(True), clock=ticking())
    running = asyncio.create_task(run(stream, client))
    for _ in range(3):
        await client.next_chunk()
    loaded.set()
    await running
    assert client.sent[0] == {"type": "http.response.start", "status": 200, "headers": client.sent[0]["headers"]}
    assert [m["type"] for m in client.sent].count("http.response.start") == 1
    comments = [line for line in client.body.split("\n") if line.startswith(":")]
    assert comments[:3] == [": loading a/x 6 s", ": loading a/x 12 s", ": loading a/x 18 s"]
    assert client.body.endswith('data: {"x": 1}\n\ndata: [DONE]\n\n')
    assert done == [True]


async def test_a_failed_load_ends_the_stream_with_one_error_event() -> None:
    async def answer() -> Response:
        raise Unavailable("a/x is still loading after 1 s (load_timeout_s); retry shortly")

    client = Client()
    await run(LoadingStream("a/x", answer, interval_s=1.0), client)
    events = [line for line in client.body.split("\n") if line.startswith("data: ")]
    assert len(events) == 1
    error = json.loads(events[0].removeprefix("data: "))["error"]
    assert error["code"] == "unavailable" and "load_timeout_s" in error["message"]
    assert client.sent[-1]["more_body"] is False


async def test_an_engine_refusal_after_the_load_becomes_the_final_error_event() -> None:
    async def answer() -> Response:
        body = {"error": {"message": "prompt too long", "type": "BadRequestError", "code": 400}}
        return Response(json.dumps(body), 400, media_type="application/json")

    client = Client()
    await run(LoadingStream("a/x", answer, interval_s=1.0), client)
    assert '"prompt too long"' in client.body and client.body.endswith("\n\n")


async def test_a_client_that_leaves_while_the_model_loads_cancels_its_wait() -> None:
    cancelled = asyncio.Event()
    released: list[bool] = []

    async def answer() -> Response:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    client = Client()
    running = asyncio.create_task(run(LoadingStream("a/x", answer, on_done=lambda: released.append(True)), client))
    await client.next_chunk()
    client.leave()
    await running
    async with asyncio.timeout(DEADLINE):
        await cancelled.wait()
    assert released == [True]


async def test_releasing_releases_after_the_answer_is_sent_even_when_sending_fails() -> None:
    released: list[int] = []
    client = Client()
    await run(Releasing(Response(b"{}", 200), lambda: released.append(1)), client)
    assert released == [1] and client.body == "{}"

    async def broken(message: dict[str, Any]) -> None:
        raise OSError("connection reset")

    with pytest.raises(OSError):
        await Releasing(Response(b"{}", 200), lambda: released.append(2))({"type": "http"}, client.receive, broken)
    assert released == [1, 2]
