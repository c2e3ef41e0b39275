"""Both services faked behind one ``httpx.MockTransport`` (unit tests only).

Replies are built from the shared wire models so the fakes cannot drift from the real JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from click.testing import Result
from llf_common.wire import (
    GatewayStatus,
    JobInfo,
    ModelInfo,
    ModelStatus,
    Progress,
    PullResponse,
    ReplicaPlacement,
    ReplicaStatus,
)

REGISTRY = "http://registry.test"
GATEWAY = "http://gateway.test"
MODEL = "acme/tiny-chat"
OTHER_MODEL = "acme/coder"

Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]


def model_info(name: str = MODEL, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "revision": "main",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "path": f"/models/{name}",
        "size_bytes": 2_500_000,
        "verified": True,
        "architecture": "LlamaForCausalLM",
        "architecture_supported": True,
        "params": 1_000_000,
        "dtype": "float32",
        "weight_bytes": 4_000_000,
        "context_length": 2048,
        "files": [{"path": "config.json", "size": 500}],
    }
    return ModelInfo(**{**base, **fields}).model_dump(mode="json")


def job_info(
    state: str = "finished", *, phase: str = "done", done: int = 2_500_000, job_id: str = "job-1", **fields: Any
) -> dict[str, Any]:
    progress = Progress(
        phase=phase,
        bytes_done=done,
        bytes_total=2_500_000,
        files_done=1,
        files_total=2,
        current_file="model.safetensors",
        rate_bps=1_000_000.0,
    )
    base: dict[str, Any] = {
        "id": job_id,
        "kind": "pull",
        "repo": MODEL,
        "revision": "main",
        "state": state,
        "progress": progress,
        "enqueued_at": "2026-01-01T00:00:00Z",
    }
    return JobInfo(**{**base, **fields}).model_dump(mode="json")


def pull_response(state: str = "queued", job: dict[str, Any] | None = None) -> dict[str, Any]:
    job = job if job is not None else job_info("queued", phase="waiting", done=0, position=0)
    return PullResponse(
        state=state,
        repo=MODEL,
        revision="main",
        sha="0123456789abcdef",
        job_id=None if state == "present" else job["id"],
        job=None if state == "present" else job,
    ).model_dump(mode="json")


def gateway_status(*models: str, state: str | None = None, **fields: Any) -> dict[str, Any]:
    replicas = [
        ReplicaStatus(
            id="r0", model=m, state="ready", pid=4242, port=50001, uptime_s=75.0, tokens_per_s=12.5, max_model_len=2048
        )
        for m in models
    ]
    status = GatewayStatus(
        state=state or ("ready" if models else "idle"), models=list(models), replicas=replicas, **fields
    )
    return status.model_dump(mode="json")


def sse(events: Iterable[Any], *, done: bool = False) -> httpx.Response:
    lines = [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]
    if done:
        lines.append("data: [DONE]\n\n")
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content="".join(lines).encode())


def chat_chunks(*pieces: str, usage: int | None = None, finish: str = "stop") -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = [
        {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": p}}]}
        for p in pieces
    ]
    chunks.append({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if usage is not None:
        chunks.append({"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": usage}})
    return chunks


def answer(*pieces: str, usage: int | None = None) -> httpx.Response:
    return sse(chat_chunks(*pieces, usage=usage), done=True)


def answer_after_loading(model: str, *pieces: str, seconds: tuple[int, ...] = (0, 5)) -> httpx.Response:
    """A stream that waits for ``model`` to load on demand: the gateway's SSE comment lines, then the answer."""
    comments = "".join(f": loading {model} {s} s\n\n" for s in seconds)
    events = sse(chat_chunks(*pieces), done=True).content.decode()
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=(comments + events).encode())


def old_gateway_status(*models: str, **fields: Any) -> dict[str, Any]:
    """The status of a gateway from before load on demand: no ``model_states``."""
    status = gateway_status(*models, **fields)
    status.pop("model_states")
    return status


def placed_status() -> dict[str, Any]:
    """Two models on a 2-GPU box: a replica each of MODEL on GPU0 and GPU1, OTHER tensor-parallel over both."""
    replicas = [
        ReplicaStatus(
            id=rid,
            model=model,
            state=state,
            pid=pid,
            port=port,
            uptime_s=30.0,
            max_model_len=2048,
            placement=ReplicaPlacement(device="cuda", gpus=gpus, gpu_memory_utilization=share),
        )
        for rid, model, state, pid, port, gpus, share in (
            ("r0", MODEL, "ready", 101, 50001, [0], 0.125),
            ("r1", MODEL, "ready", 102, 50002, [1], 0.125),
            ("r2", OTHER_MODEL, "starting", 103, 50003, [0, 1], 0.5),
        )
    ]
    states = [
        ModelStatus(model=MODEL, state="loaded", replicas=2, in_flight=1, keep_alive_s=None),
        ModelStatus(model=OTHER_MODEL, state="loading", replicas=1, waiting=3),
    ]
    status = GatewayStatus(state="loading", models=[MODEL], target=OTHER_MODEL, replicas=replicas, model_states=states)
    return status.model_dump(mode="json")


@dataclass
class Fake:
    """Routes ``(method, url)`` to canned replies; a list of replies is served in order (last one repeats)."""

    routes: dict[tuple[str, str], list[Reply]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, url: str, *replies: Reply) -> None:
        self.routes[(method, url)] = list(replies)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url).split("?")[0]
        replies = self.routes.get((request.method, url))
        if not replies:
            return httpx.Response(404, json={"detail": "Not Found"})
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        return reply(request) if callable(reply) else reply

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    def body(self, method: str, path: str, index: int = -1) -> Any:
        return json.loads(self.sent(method, path)[index].content)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]


def no_ansi(result: Result) -> bool:
    return "\x1b[" not in result.output
