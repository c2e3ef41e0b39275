"""The one fake OpenAI engine of the test suite: a stand-in for ``vllm.entrypoints.openai.api_server``.

Two ways to use it: in-process, ``FakeEngine(model, max_model_len)`` is a plain ASGI app that
a unit test puts behind ``httpx.ASGITransport`` (no port, no process); as a process,
``python tests/support/fake_engine.py`` is what the gateway's component tests launch as its
engine command, so the supervisor's real process handling (process groups, log capture,
crash detection, restart) runs in under a second per engine instead of ~25 s with vLLM.
It imports nothing from the repository, so it runs from its path with any interpreter.

As a process it takes the engine's command line (``--model``, ``--served-model-name``, and
``--port`` or ``--uds``: the gateway's engines listen on a Unix socket by default; the rest
ignored) and speaks the few routes the gateway uses: ``/health``, ``/v1/models``, ``/metrics``,
``/v1/chat/completions`` and ``/v1/completions`` (streamed or not, one SSE event per token like
vLLM), and sleep mode's ``/sleep``, ``/wake_up`` and ``/is_sleeping`` (asleep, it refuses
completions), plus the model-addressed extras the gateway relays as they are:
``/v1/embeddings``, ``/v1/rerank`` (and ``/rerank``), ``/v1/score``, ``/tokenize``,
``/detokenize``, ``/v1/responses`` (ids ``resp_<n>``) and the multipart ``/v1/audio/*``
(answering with the upload's size); any other path is a 404, as vLLM's would be.
In-process, ``requests`` holds every completion body received, ``extras`` every other
(path, body or size, content type).
Misbehaviour is chosen with environment variables:

  FAKE_START_DELAY=S        sleep S seconds before listening (a slow engine)
  FAKE_FAIL="text"          print the text (\\n = newline) and exit FAKE_EXIT_CODE (default 1)
  FAKE_TOKEN_DELAY=S        seconds between streamed tokens (default 0)
  FAKE_UNHEALTHY_AFTER=S    /health answers 500 once S seconds have passed since start
  FAKE_STUBBORN_CHILD=1     fork a child that ignores SIGTERM (tests the SIGKILL escalation)
  FAKE_EVENTS=path          append "request <model>" / "disconnect" / "done" lines to a file
  FAKE_STATE=path           first start of a "crash once" engine writes here; see FAKE_FAIL_ONCE
  FAKE_FAIL_ONCE=1          with FAKE_STATE: exit 1 on the first start only
  FAKE_DIE_ON_REQUEST="t"   on the first completion request, print the text and exit 1 (a vLLM
                            whose worker died of SIGILL under its first forward pass)

Like vLLM, it reads ``VLLM_API_KEY``: when set, every route but ``/health`` answers 401 to a
request without ``Authorization: Bearer <key>`` (vLLM guards only its ``/v1`` routes; the fake
guards all of them, so a gateway call that forgets the key fails in the component tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

Scope = dict[str, Any]


def _event(line: str) -> None:
    path = os.environ.get("FAKE_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


class FakeEngine:
    """The ASGI app: one served model, vLLM's routes and its one-SSE-event-per-token streaming."""

    def __init__(self, model: str, max_model_len: int) -> None:
        self.model = model
        self.max_model_len = max_model_len
        self.started = time.monotonic()
        self.token_delay = float(os.environ.get("FAKE_TOKEN_DELAY", "0"))
        unhealthy = os.environ.get("FAKE_UNHEALTHY_AFTER")
        self.unhealthy_after = float(unhealthy) if unhealthy else None
        self.requests: list[dict[str, Any]] = []
        self.extras: list[tuple[str, Any, str]] = []
        self.sleeping = False
        key = os.environ.get("VLLM_API_KEY")
        self.authorization = f"Bearer {key}".encode() if key else None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        path, method = scope["path"], scope["method"]
        refused = self.authorization and dict(scope["headers"]).get(b"authorization") != self.authorization
        if path != "/health" and refused:
            await respond(send, 401, json.dumps({"error": "Unauthorized"}).encode())
        elif path == "/health":
            sick = self.unhealthy_after is not None and time.monotonic() - self.started > self.unhealthy_after
            await respond(send, 500 if sick else 200, b"")
        elif path == "/v1/models":
            data = [{"id": self.model, "object": "model", "max_model_len": self.max_model_len}]
            await respond(send, 200, json.dumps({"object": "list", "data": data}).encode())
        elif path == "/metrics":
            await respond(send, 200, b"vllm:fake_metric 1.0\n", b"text/plain; version=0.0.4")
        elif method == "POST" and path in ("/sleep", "/wake_up"):
            self.sleeping = path == "/sleep"
            _event(path.lstrip("/"))
            await respond(send, 200, json.dumps({"status": "sleeping" if self.sleeping else "awake"}).encode())
        elif path == "/is_sleeping":
            await respond(send, 200, json.dumps({"is_sleeping": self.sleeping}).encode())
        elif method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            body = await read_body(receive)
            await self.complete(json.loads(body), path.endswith("chat/completions"), receive, send)
        elif method == "POST" and path in EXTRAS:
            body = await read_body(receive)
            content_type = dict(scope["headers"]).get(b"content-type", b"").decode()
            status, answer = self.extra(path, body, content_type)
            await respond(send, status, json.dumps(answer).encode())
        else:
            await respond(send, 404, b'{"detail": "not found"}')

    def extra(self, path: str, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        """The answer to one of ``EXTRAS``: a multipart upload's size, or vLLM's JSON shapes."""
        if path.startswith("/v1/audio/"):
            model = ""
            if b'name="model"' in body:
                model = body.split(b'name="model"', 1)[1].split(b"\r\n\r\n", 1)[1].split(b"\r\n", 1)[0].decode()
            self.extras.append((path, len(body), content_type))
            return 200, {"text": f"{len(body)} bytes for {model}"}
        request = json.loads(body)
        self.extras.append((path, request, content_type))
        if request.get("model") not in (None, self.model):
            return 404, {"error": {"message": f"The model `{request.get('model')}` does not exist.", "code": 404}}
        return 200, _extra_answer(self.model, path, request, len(self.extras))

    async def complete(self, request: dict[str, Any], chat: bool, receive: Any, send: Any) -> None:
        _event(f"request {request.get('model')}")
        self.requests.append(request)
        dying_words = os.environ.get("FAKE_DIE_ON_REQUEST")
        if dying_words:
            print(dying_words.replace("\\n", "\n"), flush=True)
            os._exit(1)
        if self.sleeping:
            await respond(send, 503, b'{"error": {"message": "the engine is asleep", "code": 503}}')
            return
        if request.get("model") not in (None, self.model):
            message = {"error": {"message": f"The model `{request.get('model')}` does not exist.", "code": 404}}
            await respond(send, 404, json.dumps(message).encode())
            return
        count = int(request.get("max_tokens") or 16)
        if not request.get("stream"):
            await asyncio.sleep(self.token_delay * count)
            text = " tok" * count
            choice = {"index": 0, "message": {"role": "assistant", "content": text}} if chat else {"text": text}
            usage = {"prompt_tokens": 1, "completion_tokens": count, "total_tokens": count + 1}
            await respond(send, 200, json.dumps({"model": self.model, "choices": [choice], "usage": usage}).encode())
            return
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        events = [{"delta": {"role": "assistant", "content": ""}}] if chat else []
        events += [{"delta": {"content": f" t{i}"}} if chat else {"text": f" t{i}"} for i in range(count)]
        for event in events:
            if gone.is_set():
                _event("disconnect")
                return
            chunk = {"object": "chat.completion.chunk", "model": self.model, "choices": [{"index": 0, **event}]}
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + json.dumps(chunk).encode() + b"\n\n",
                    "more_body": True,
                }
            )
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        watcher.cancel()
        _event("done")


EXTRAS = (
    "/v1/embeddings",
    "/v1/rerank",
    "/rerank",
    "/v1/score",
    "/tokenize",
    "/detokenize",
    "/v1/responses",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
)


def _extra_answer(model: str, path: str, request: dict[str, Any], count: int) -> dict[str, Any]:
    """vLLM's reply shapes, with made-up numbers."""
    if path == "/v1/embeddings":
        return {"object": "list", "model": model, "data": [{"object": "embedding", "index": 0, "embedding": [0.5] * 4}]}
    if path.endswith("rerank"):
        docs = request.get("documents") or []
        results = [{"index": i, "relevance_score": 1.0 / (i + 1)} for i in range(len(docs))]
        return {"id": "rerank-1", "model": model, "results": results}
    if path == "/v1/score":
        return {"id": "score-1", "object": "list", "model": model, "data": [{"index": 0, "score": 0.5}]}
    if path == "/tokenize":
        tokens = [ord(c) for c in str(request.get("prompt", ""))]
        return {"tokens": tokens, "count": len(tokens), "max_model_len": 0}
    if path == "/detokenize":
        return {"prompt": "".join(chr(t) for t in request.get("tokens", []))}
    return {"id": f"resp_{count}", "object": "response", "model": model, "status": "completed", "output": []}


# The bare ASGI plumbing of a fake engine; bench.upstream (the relay benchmark's upstream) uses it too.
async def lifespan(receive: Any, send: Any) -> None:
    """Answer ASGI lifespan messages until shutdown: an engine has nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Any) -> bytes:
    """The whole request body, however many messages it came in."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def respond(send: Any, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    """One whole response: status, content type, body."""
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--uds", help="listen on this Unix socket instead of host:port (like vLLM)")
    parser.add_argument("--max-model-len", type=int, default=256)
    args, _ = parser.parse_known_args()
    if (args.port is None) == (args.uds is None):
        parser.error("give --port or --uds")
    print(f"fake engine argv={sys.argv[1:]} kvcache={os.environ.get('VLLM_CPU_KVCACHE_SPACE')}", flush=True)
    _event("start " + " ".join(sys.argv[1:]))
    if os.environ.get("FAKE_STUBBORN_CHILD") and os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(1)
    time.sleep(float(os.environ.get("FAKE_START_DELAY", "0")))
    state = os.environ.get("FAKE_STATE")
    fail_once = os.environ.get("FAKE_FAIL_ONCE") and state and not Path(state).exists()
    if state and fail_once:
        Path(state).write_text("crashed once")
    failure = os.environ.get("FAKE_FAIL")
    if failure or fail_once:
        print((failure or "RuntimeError: crashed once").replace("\\n", "\n"), flush=True)
        sys.exit(int(os.environ.get("FAKE_EXIT_CODE", "1")))

    import uvicorn

    engine = FakeEngine(args.served_model_name or args.model, args.max_model_len)
    where = {"uds": args.uds} if args.uds else {"host": args.host, "port": args.port}
    uvicorn.run(engine, **where, log_level="warning", access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
