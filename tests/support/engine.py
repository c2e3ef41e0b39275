"""A real vLLM OpenAI server as a test fixture: own process group, free port, log file, always killed.

The gateway supervises engines in production; this helper exists for tests that need an
engine *without* the gateway (the harness check, benchmarks of the raw engine). vLLM forks an
EngineCore and workers, so stopping signals the whole process group, never just the parent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx
from llf_inference.engine.spec import STARTUP_DIR

from tests.support.net import free_port, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]


def engine_python() -> Path:
    """The gateway's ``$LLF_INFERENCE_ENGINE_PYTHON`` (or its old name ``$LLF_ENGINE_PYTHON``), else
    ``.venv-engine/bin/python`` of this checkout (may not exist)."""
    explicit = os.environ.get("LLF_INFERENCE_ENGINE_PYTHON") or os.environ.get("LLF_ENGINE_PYTHON")
    return Path(explicit) if explicit else REPO_ROOT / ".venv-engine" / "bin" / "python"


class EngineError(RuntimeError):
    """The engine exited or did not become healthy in time; the message carries its log tail."""


class VllmEngine:
    """``python -m vllm.entrypoints.openai.api_server --model DIR --enforce-eager`` on 127.0.0.1."""

    def __init__(
        self,
        python: Path,
        model: Path | str,
        log_path: Path,
        *,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.python = Path(python)
        self.model = str(model)
        self.log_path = Path(log_path)
        self.extra_args = extra_args or []
        self.env = env or {}
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        """Base URL of the OpenAI API (``.../v1``)."""
        if self.port is None:
            raise EngineError("engine not started")
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 300.0) -> str:
        self.port = free_port()
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        # The gateway's AMX permission hook, as every engine the gateway starts gets it: on an AMX host a
        # bare engine whose first prefill is 1-2 tokens dies of SIGILL without it.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(STARTUP_DIR), env.get("PYTHONPATH", "")]))
        env.update(self.env)
        command = [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.model,
            "--enforce-eager",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            self._wait_healthy(began + timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self.url

    def _wait_healthy(self, deadline: float) -> None:
        assert self.process is not None
        process = self.process
        health = f"http://127.0.0.1:{self.port}/health"

        def healthy() -> bool:
            if process.poll() is not None:
                raise EngineError(f"engine exited with {process.returncode}: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(health, timeout=2).status_code == 200
            return False

        try:
            wait_for(healthy, max(0.0, deadline - time.monotonic()), "the engine to answer /health", interval=0.5)
        except AssertionError as exc:
            raise EngineError(f"{exc}: {self.log_tail()}") from None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, SIGKILL what is left; safe to call twice."""
        if self.process is None:
            return
        pgid = self.process.pid  # == the group id: started with start_new_session
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)  # what is left of the group (EngineCore, workers)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> VllmEngine:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
