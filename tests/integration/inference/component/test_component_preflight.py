"""The pre-flight generation over a fake-engine process: an engine that dies on its first request
is ``failed`` with the reason and the setting that fixes it, never ``ready``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from llf_inference.engine.spec import EngineSpec
from llf_inference.replica import Replica
from llf_inference.settings import InferenceSettings

from tests.support.fake_gateway import MODEL

pytestmark = pytest.mark.anyio
MakeSettings = Callable[..., InferenceSettings]

WORKER_SIGILL = (
    "(EngineCore_DP0 pid=7) ERROR 12-01 10:02:14 [multiproc_executor.py:316] Worker proc VllmWorker-0 died "
    "unexpectedly (exit code: -4), shutting down executor."
)


async def test_an_engine_that_dies_of_sigill_on_its_first_request_never_says_ready(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings(engine_env={"FAKE_DIE_ON_REQUEST": WORKER_SIGILL})
    replica = Replica("r0", EngineSpec.from_settings(settings, MODEL, settings.model_paths[MODEL]), settings)
    try:
        replica.start()
        assert await replica.wait_settled(30) == "failed"
        assert replica.restarts == 0 and replica.ready_since is None  # never ready, not restarted
        assert replica.failure is not None and replica.failure.kind == "unsupported_cpu"
        status = replica.status()
        assert status.last_error is not None
        assert "the engine's CPU kernels are not supported on this processor" in status.last_error
        assert "LLF_INFERENCE_DTYPE=float32" in status.last_error
    finally:
        await replica.stop()


async def test_an_engine_that_generates_is_ready_after_its_pre_flight(make_settings: MakeSettings) -> None:
    settings = make_settings()
    replica = Replica("r0", EngineSpec.from_settings(settings, MODEL, settings.model_paths[MODEL]), settings)
    try:
        replica.start()
        assert await replica.wait_settled(30) == "ready"
    finally:
        await replica.stop()
