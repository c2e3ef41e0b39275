"""The behaviours of a multi-model GPU workstation, each checked over the gateway's HTTP API.

Every check returns a ``Result``: PASS, FAIL or SKIP (it cannot apply here, e.g. tensor
parallelism on one GPU) with the figures that back it (placements, memory shares, seconds).
Checks run in order on one gateway and may rely on the models the previous ones loaded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx

Verdict = Literal["PASS", "FAIL", "SKIP"]


@dataclass(frozen=True)
class Result:
    name: str
    verdict: Verdict
    figures: str

    def line(self) -> str:
        return f"{self.verdict:4}  {self.name:<18} {self.figures}"


@dataclass(frozen=True)
class Stream:
    """One streamed chat answer: the ``: loading`` comment lines before it, and when its first token came."""

    comments: list[str]
    first_token_s: float | None
    text: str
    status: int


class Api:
    """The gateway's control plane and a streaming chat, with the deadlines a check needs."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 900.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(timeout, connect=5.0))
        self.timeout = timeout

    def serve(self, model: str, **fields: Any) -> httpx.Response:
        return self.http.post("/v1/serve", json={"model": model, "wait": True, **fields})

    def stop(self, model: str) -> httpx.Response:
        return self.http.delete(f"/v1/serve/{quote(model, safe='/')}")

    def status(self) -> dict[str, Any]:
        response = self.http.get("/v1/status")
        response.raise_for_status()
        return dict(response.json())

    def model_state(self, model: str) -> str:
        states = {m["model"]: m["state"] for m in self.status().get("model_states") or []}
        return str(states.get(model, "available"))

    def replicas(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.status().get("replicas") or [] if r.get("model") == model and r.get("state") == "ready"]

    def chat(self, model: str, *, keep_alive: str | None = None, max_tokens: int = 8) -> Stream:
        """A streamed answer; ``keep_alive`` is the request's own (Ollama's extension field)."""
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": max_tokens,
            "stream": True,
        }
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        comments: list[str] = []
        text, first = "", None
        started = time.perf_counter()
        with self.http.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                response.read()
                return Stream(comments, None, response.text[:200], response.status_code)
            for line in response.iter_lines():
                if line.startswith(":"):
                    comments.append(line[1:].strip())
                elif line.startswith("data:") and line[5:].strip() != "[DONE]":
                    chunk = json.loads(line[5:])
                    for choice in chunk.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            first = first if first is not None else time.perf_counter() - started
                            text += piece
        return Stream(comments, first, text, 200)

    def wait_for(self, what: str, condition: Callable[[], bool], seconds: float) -> float:
        """Seconds until ``condition()`` held; ``TimeoutError`` naming ``what`` after ``seconds``."""
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > seconds:
                raise TimeoutError(f"{what} did not happen within {seconds:.0f} s")
            time.sleep(0.2)
        return time.monotonic() - started


def where(replica: dict[str, Any]) -> str:
    """``GPU0,1 share 0.081`` or ``cores 2-3``: a replica's placement in a few words."""
    placement = replica.get("placement") or {}
    gpus = placement.get("gpus") or []
    if gpus:
        return f"GPU{','.join(map(str, gpus))} share {placement.get('gpu_memory_utilization')}"
    return f"cores {','.join(map(str, placement.get('cores') or [])) or '?'}"


def error_line(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:200]}"
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else body
    return f"{response.status_code} {message}"


def two_models(api: Api, first: str, second: str) -> Result:
    """Both models served at once by one gateway, each answering."""
    for model in (first, second):
        response = api.serve(model)
        if response.status_code != 200:
            return Result("two models", "FAIL", f"serve {model}: {error_line(response)}")
    served = api.status().get("models") or []
    answers = {model: api.chat(model) for model in (first, second)}
    placed = "; ".join(f"{m}: {', '.join(where(r) for r in api.replicas(m))}" for m in (first, second))
    ok = all(m in served for m in (first, second)) and all(a.text for a in answers.values())
    return Result("two models", "PASS" if ok else "FAIL", f"{placed}; served {served}")


def tensor_parallel(api: Api, model: str, gpus: int) -> Result:
    """The model configured with tensor_parallel_size 2 runs as one replica over two GPUs."""
    if gpus < 2:
        return Result("tensor parallel", "SKIP", f"{gpus} GPU: a tensor-parallel group needs 2")
    replicas = api.replicas(model)
    groups = [r for r in replicas if len((r.get("placement") or {}).get("gpus") or []) == 2]
    answered = bool(api.chat(model).text)
    ok = bool(groups) and answered
    return Result("tensor parallel", "PASS" if ok else "FAIL", f"{model}: {', '.join(map(where, replicas)) or 'none'}")


def replica_per_gpu(api: Api, model: str, gpus: int) -> Result:
    """``replicas: auto`` puts one replica of the model on each GPU, never two on one."""
    response = api.serve(model, replicas="auto")
    if response.status_code != 200:
        return Result("replica per GPU", "FAIL", f"serve {model} replicas=auto: {error_line(response)}")
    replicas = api.replicas(model)
    used = [g for r in replicas for g in (r.get("placement") or {}).get("gpus") or []]
    ok = len(replicas) == gpus and len(set(used)) == len(used) == gpus
    figures = f"{len(replicas)} replicas of {model} on {gpus} GPUs: {', '.join(map(where, replicas))}"
    return Result("replica per GPU", "PASS" if ok else "FAIL", figures)


def fit_refusal(api: Api, model: str) -> Result:
    """A model that fits nowhere is refused at once (507, one line) and nothing starts."""
    before = [r.get("id") for r in api.status().get("replicas") or []]
    started = time.perf_counter()
    response = api.serve(model)
    took = time.perf_counter() - started
    after = [r.get("id") for r in api.status().get("replicas") or []]
    message = error_line(response)
    ok = response.status_code == 507 and "\n" not in message and before == after and took < 10
    return Result(
        "fit refusal", "PASS" if ok else "FAIL", f"{message} ({took:.2f} s, replicas unchanged: {before == after})"
    )


def load_on_demand(api: Api, model: str) -> tuple[Result, float | None]:
    """After ``DELETE /v1/serve/{model}`` (drain, unload), a streamed request loads it: comment lines, then tokens."""
    stopped = api.stop(model)
    if stopped.status_code not in (200, 404):  # 404: not loaded, which is what this check needs
        return Result("load on demand", "FAIL", f"stop {model}: {error_line(stopped)}"), None
    answer = api.chat(model)
    ok = answer.status == 200 and bool(answer.text) and any(c.startswith("loading") for c in answer.comments)
    first = f"{answer.first_token_s:.2f} s" if answer.first_token_s is not None else "-"
    figures = f"{len(answer.comments)} ': loading' lines, then tokens; cold start → first token {first}"
    if answer.status != 200:
        figures = f"HTTP {answer.status}: {answer.text}"
    return Result("load on demand", "PASS" if ok else "FAIL", figures), answer.first_token_s


def keep_alive_unload(api: Api, model: str, seconds: float = 2.0) -> Result:
    """A request's ``keep_alive`` unloads its model once idle that long; the next request loads it again."""
    answer = api.chat(model, keep_alive=f"{seconds:g}s")
    if not answer.text:
        return Result("keep_alive unload", "FAIL", f"no answer: HTTP {answer.status} {answer.text}")
    try:
        took = api.wait_for(f"{model} unloading", lambda: api.model_state(model) in ("available", "asleep"), 120)
    except TimeoutError as exc:
        return Result("keep_alive unload", "FAIL", f"{exc} (state {api.model_state(model)})")
    state = api.model_state(model)
    again = api.chat(model, keep_alive="-1")
    ok = bool(again.text)
    return Result(
        "keep_alive unload",
        "PASS" if ok else "FAIL",
        f"keep_alive {seconds:g}s: {state} {took:.1f} s after the answer; answered again after reloading",
    )


def sleep_wake(api: Api, model: str) -> Result:
    """With sleep_mode an idle model sleeps (device memory freed) and wakes on its next request faster than it loads."""
    response = api.serve(model)
    if response.status_code != 200:
        return Result("sleep/wake", "FAIL", f"serve {model}: {error_line(response)}")
    api.chat(model, keep_alive="1s")
    try:
        api.wait_for(f"{model} leaving the GPU", lambda: api.model_state(model) in ("asleep", "available"), 120)
    except TimeoutError as exc:
        return Result("sleep/wake", "FAIL", str(exc))
    if api.model_state(model) != "asleep":
        return Result(
            "sleep/wake", "SKIP", f"{model} was unloaded, not put to sleep: the gateway runs without sleep_mode"
        )
    wake = api.chat(model, keep_alive="-1")
    api.stop(model)
    cold = api.chat(model, keep_alive="-1")
    if wake.first_token_s is None or cold.first_token_s is None:
        return Result("sleep/wake", "FAIL", f"no answer (wake HTTP {wake.status}, cold HTTP {cold.status})")
    ok = wake.first_token_s < cold.first_token_s
    figures = f"wake → first token {wake.first_token_s:.2f} s, cold start → first token {cold.first_token_s:.2f} s"
    return Result("sleep/wake", "PASS" if ok else "FAIL", figures)
