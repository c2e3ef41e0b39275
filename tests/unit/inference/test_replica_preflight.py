"""The pre-flight generation: a replica is ``ready`` only after its engine generated one token.

The engine here is an ``httpx.MockTransport`` and a stand-in for its process (log tail, exit
status), so each way a first generation can go wrong is played without a subprocess.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from llf_inference.engine.failure import Failure
from llf_inference.engine.spec import EngineSpec
from llf_inference.replica import Replica

from tests.support.fake_gateway import MODEL
from tests.unit.inference.conftest import MakeSettings

pytestmark = pytest.mark.anyio

SIGILL_LINE = "(EngineCore_DP0 pid=9) ERROR Worker proc VllmWorker-0 died unexpectedly (exit code: -4), shutting down."


@dataclass
class StandInProcess:
    """What the replica reads of an engine process: alive, its log tail, its exit status."""

    lines: list[str] = field(default_factory=list)
    returncode: int | None = None

    @property
    def alive(self) -> bool:
        return self.returncode is None

    @property
    def popen(self) -> SimpleNamespace:
        return SimpleNamespace(poll=lambda: self.returncode, returncode=self.returncode)

    def log_tail(self, lines: int | None = None) -> list[str]:
        return list(self.lines)


Handler = Callable[[httpx.Request], httpx.Response]


async def preflight(make_settings: MakeSettings, handler: Handler, process: StandInProcess, exited: asyncio.Event,
                    device: str = "cpu") -> Failure | None:  # fmt: skip
    settings = make_settings(readiness_timeout_s=5.0)
    spec = EngineSpec.from_settings(settings, MODEL, "/models/tiny")
    replica = Replica("r0", EngineSpec(**{**spec.__dict__, "device": device}), settings)
    replica.process = process  # type: ignore[assignment]
    replica.preflight_exit_grace_s = 0.2
    replica.client = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://engine")
    try:
        async with asyncio.timeout(30):  # a deadline for the whole pre-flight
            return await replica._preflight(exited)
    finally:
        await replica.client.aclose()


def answer(text: str = "!") -> httpx.Response:
    return httpx.Response(200, json={"object": "text_completion", "choices": [{"index": 0, "text": text}]})


async def test_an_engine_that_generates_one_token_passes(make_settings: MakeSettings) -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/completions"
        seen.append(json.loads(request.content))
        return answer()

    assert await preflight(make_settings, handler, StandInProcess(), asyncio.Event()) is None
    assert seen == [{"model": MODEL, "prompt": "hi", "max_tokens": 1, "temperature": 0}]


async def test_a_worker_killed_by_sigill_fails_the_replica_as_an_unsupported_cpu(make_settings: MakeSettings) -> None:
    process, exited = StandInProcess(), asyncio.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        process.lines.append(SIGILL_LINE)  # the worker dies, then the API server exits
        process.returncode = 1
        exited.set()
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    failure = await preflight(make_settings, handler, process, exited)
    assert failure is not None and failure.kind == "unsupported_cpu" and failure.permanent
    assert "not supported on this processor" in failure.message and "LLF_INFERENCE_DTYPE=float32" in failure.message


async def test_a_dead_worker_under_a_running_api_server_is_read_from_the_log(make_settings: MakeSettings) -> None:
    process = StandInProcess()

    def handler(request: httpx.Request) -> httpx.Response:
        process.lines.append(SIGILL_LINE)
        return httpx.Response(500, json={"error": {"message": "EngineCore encountered an issue."}})

    failure = await preflight(make_settings, handler, process, asyncio.Event())
    assert failure is not None and failure.kind == "unsupported_cpu"


async def test_an_engine_error_fails_the_replica_with_the_answer_and_the_setting_to_change(
    make_settings: MakeSettings,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="Internal Server Error")

    failure = await preflight(make_settings, handler, StandInProcess(), asyncio.Event())
    assert failure is not None and failure.kind == "preflight_failed" and failure.permanent
    assert "first generation" in failure.message and "HTTP 500: Internal Server Error" in failure.message
    assert "LLF_INFERENCE_DTYPE=float32" in failure.message


async def test_an_answer_without_choices_is_not_a_generation(make_settings: MakeSettings) -> None:
    failure = await preflight(make_settings, lambda _: httpx.Response(200, json={}), StandInProcess(), asyncio.Event())
    assert failure is not None and "without choices" in failure.message


async def test_a_gpu_engine_is_not_told_to_change_its_cpu_dtype(make_settings: MakeSettings) -> None:
    failure = await preflight(
        make_settings, lambda _: httpx.Response(503), StandInProcess(), asyncio.Event(), device="cuda"
    )
    assert failure is not None and "DTYPE" not in failure.message
