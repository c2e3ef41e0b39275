"""An engine killed by SIGILL is an unsupported CPU, said once and not restarted in a loop."""

from __future__ import annotations

import signal

import pytest
from llf_inference.engine.failure import classify_failure

# What vLLM 0.32's API server prints when a spawned worker dies of an illegal instruction.
WORKER_SIGILL_LOG = [
    "(APIServer pid=811) INFO 12-01 10:02:11 [api_server.py:1043] Starting vLLM API server 0 on http://127.0.0.1:41313",
    "(EngineCore_DP0 pid=902) ERROR 12-01 10:02:14 [multiproc_executor.py:316] Worker proc VllmWorker-0 died "
    "unexpectedly (exit code: -4), shutting down executor.",
    "(APIServer pid=811) ERROR 12-01 10:02:14 [async_llm.py:480] AsyncLLM output_handler failed.",
    "(APIServer pid=811) vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue.",
]


@pytest.mark.parametrize(
    ("lines", "returncode"),
    [
        (WORKER_SIGILL_LOG, 1),
        (WORKER_SIGILL_LOG, None),
        (["INFO loading weights"], -signal.SIGILL),
        (["/bin/sh: line 1:   811 Illegal instruction     (core dumped) python -m vllm..."], 132),
    ],
)
def test_sigill_is_an_unsupported_cpu_with_the_setting_that_fixes_it(lines: list[str], returncode: int | None) -> None:
    failure = classify_failure(lines, returncode)
    assert failure.kind == "unsupported_cpu"
    assert failure.permanent is True
    assert str(failure).startswith("the engine's CPU kernels are not supported on this processor: ")
    assert "LLF_INFERENCE_DTYPE=float32" in str(failure)


def test_the_worker_line_is_quoted_without_its_process_prefix() -> None:
    message = classify_failure(WORKER_SIGILL_LOG, 1).message
    assert "Worker proc VllmWorker-0 died unexpectedly (exit code: -4)" in message
    assert "(EngineCore_DP0 pid=" not in message


def test_a_worker_that_died_of_another_signal_is_not_blamed_on_the_cpu() -> None:
    lines = ["(EngineCore_DP0 pid=9) ERROR Worker proc VllmWorker-0 died unexpectedly (exit code: -9), shutting down."]
    assert classify_failure(lines, 1).kind != "unsupported_cpu"
    assert classify_failure(["INFO fine"], -signal.SIGSEGV).kind == "killed"
