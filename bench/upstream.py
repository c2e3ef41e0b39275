"""A synthetic OpenAI-compatible upstream that streams chat chunks as fast as it can.

Why: the relay benchmark (#2) must measure the gateway's own cost per chunk, which a real
engine (a few hundred tokens/s on CPU) could never expose. This is a bare ASGI app (no
framework) with pre-encoded chunks, so it is as cheap as an upstream can be; each chunk is one
``http.response.body`` message, like vLLM's streaming, unless ``--batch`` groups them. That is
why it is not the test suite's fake engine (``tests/support/fake_engine.py``, which encodes
every token and watches for disconnects, so it would measure itself); the ASGI plumbing around
the stream (lifespan, request body, whole responses) is that engine's.

It answers what a gateway may ask an engine: ``POST /v1/chat/completions`` and
``/v1/completions`` (``max_tokens`` = number of chunks, streamed when ``stream`` is true),
``GET /v1/models``, ``/health``, ``/healthz``, ``/metrics``, ``/version``.

Run: ``python -m bench.upstream --port 9000 [--served-model-name bench/upstream] [--batch 1]``.
It takes vLLM's own command-line shape (``--model PATH --served-model-name NAME --host --port``,
anything else ignored), so the gateway can launch it as its "engine" through
``LLF_INFERENCE_ENGINE_COMMAND`` — the gateway then relays exactly as it relays vLLM. The batch size can
also come from ``LLF_BENCH_UPSTREAM_BATCH`` (the gateway passes its environment on).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.support.fake_engine import lifespan, read_body, respond

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_CHUNKS = 1_000_000


def _chunk(model: str, kind: str) -> bytes:
    if kind == "chat":
        body = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": {"content": " tok"}, "logprobs": None, "finish_reason": None}],
        }
    else:
        body = {
            "id": "cmpl-bench",
            "object": "text_completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "text": " tok", "logprobs": None, "finish_reason": None}],
        }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


class Upstream:
    """The ASGI app; one instance serves one model name."""

    def __init__(self, model: str = "bench/upstream", batch: int = 1, max_len: int = DEFAULT_CHUNKS) -> None:
        self.model = model
        self.batch = max(1, batch)
        self.max_len = max(1, max_len)
        self.chunks = {kind: _chunk(model, kind) for kind in ("chat", "text")}
        created = int(time.time())
        self.models_body = json.dumps(
            {
                "object": "list",
                "data": [
                    {"id": model, "object": "model", "created": created, "owned_by": "bench",
                     "max_model_len": self.max_len}
                ],
            }
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path in ("/health", "/healthz", "/ping"):
            await respond(send, 200, b"{}")
        elif method == "GET" and path == "/v1/models":
            await respond(send, 200, self.models_body)
        elif method == "GET" and path == "/version":
            await respond(send, 200, b'{"version":"bench-upstream"}')
        elif method == "GET" and path == "/metrics":
            await respond(send, 200, b"", content_type=b"text/plain; version=0.0.4")
        elif method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            request = await _read_json(receive)
            kind = "chat" if path.endswith("chat/completions") else "text"
            await self._complete(send, request, kind)
        else:
            await respond(send, 404, b'{"detail":"not found"}')

    async def _complete(self, send: Send, request: dict[str, Any], kind: str) -> None:
        count = request.get("max_tokens") or request.get("max_completion_tokens") or DEFAULT_CHUNKS
        count = int(count) if isinstance(count, int | float) and count > 0 else self.max_len
        count = min(count, self.max_len)
        if not request.get("stream"):
            text = " tok" * count
            choice = {"index": 0, "finish_reason": "length"}
            choice |= {"message": {"role": "assistant", "content": text}} if kind == "chat" else {"text": text}
            usage = {"prompt_tokens": 1, "completion_tokens": count, "total_tokens": count + 1}
            body = {"id": "bench", "object": "chat.completion", "created": 0, "model": self.model,
                    "choices": [choice], "usage": usage}
            await respond(send, 200, json.dumps(body).encode())
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")],
            }
        )
        block = self.chunks[kind] * self.batch
        full, rest = divmod(count, self.batch)
        for _ in range(full):
            await send({"type": "http.response.body", "body": block, "more_body": True})
        if rest:
            await send({"type": "http.response.body", "body": self.chunks[kind] * rest, "more_body": True})
        usage = {"prompt_tokens": 1, "completion_tokens": count, "total_tokens": count + 1}
        final = {"id": "bench", "object": "chat.completion.chunk", "created": 0, "model": self.model,
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}], "usage": usage}
        tail = b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n"
        await send({"type": "http.response.body", "body": tail, "more_body": False})


async def _read_json(receive: Receive) -> dict[str, Any]:
    try:
        data = json.loads(await read_body(receive) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--uds", help="listen on this Unix socket instead of host:port (like vLLM)")
    parser.add_argument("--model", default="bench/upstream", help="a path or a name (like vLLM)")
    parser.add_argument("--served-model-name", default=None, help="the name clients use (like vLLM)")
    parser.add_argument(
        "--batch",
        type=int,
        default=int(os.environ.get("LLF_BENCH_UPSTREAM_BATCH", "1")),
        help="chunks per ASGI message (1 = one write per chunk, like vLLM)",
    )
    parser.add_argument(
        "--max-len",
        type=int,
        default=int(os.environ.get("LLF_BENCH_UPSTREAM_MAX_LEN", str(DEFAULT_CHUNKS))),
        help="the context length it reports, and the most chunks one answer has",
    )
    args, _ignored = parser.parse_known_args(argv)
    if (args.port is None) == (args.uds is None):
        parser.error("give --port or --uds")
    where: dict[str, Any] = {"uds": args.uds} if args.uds else {"host": args.host, "port": args.port}
    uvicorn.run(
        Upstream(args.served_model_name or args.model, args.batch, args.max_len),
        **where,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
