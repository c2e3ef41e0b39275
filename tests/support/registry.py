"""The model registry as real subprocesses: ``llf-models`` (API) and N ``llf-models-worker``.

Why subprocesses: the things worth testing (a worker SIGKILLed mid-download, a job requeued
by another worker, uvicorn serving SSE) only happen between real processes. Every process gets
its own process group, a log file, and is killed in ``stop()``; ports are free ports.

Usage::

    with RegistryStack(tmp_path, redis_url=redis_url, hf_endpoint=hub.url) as stack:
        stack.start(workers=2)          # or start_api() and start_worker() one by one
        httpx.post(f"{stack.url}/v1/pulls", json={"repo": "o/n"})
        import_tiny_model(stack.url, tiny_model_dir, "local/tiny")

Defaults worth knowing: ``LLF_MODELS_DISK_MARGIN_BYTES=0``, and ``LLF_INFERENCE_URL`` points at a
free port with nothing behind it (pass ``inference_url=`` to connect a gateway).

When the test run measures coverage, the children measure theirs too (data files next to the
parent's, combined by pytest-cov), including the forked work horses.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from llf_common.wire import TERMINAL_JOB_STATES

from tests.support.net import free_port, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"


class RegistryError(RuntimeError):
    """A registry process exited or did not become ready; the message carries its log tail."""


class ManagedProcess:
    """A child in its own process group, with its output in ``log_path``."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group, like an OOM kill or a container dying: no clean-up runs."""
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self._log.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful), then SIGKILL if it does not exit in ``timeout`` seconds."""
        if self.alive:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(10)
        self._signal(signal.SIGKILL)  # stragglers in the group (a work horse is in its own, and dies with its parent)
        self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)


def coverage_env(workdir: Path) -> dict[str, str]:
    """Make children measure coverage into the parent's data file, when the parent measures."""
    try:
        import coverage
    except ImportError:  # pragma: no cover
        return {}
    current = coverage.Coverage.current()
    if current is None:
        return {}
    config = current.config
    workdir.mkdir(parents=True, exist_ok=True)
    rc = workdir / "coverage-subprocess.rc"
    sources = "\n    ".join(str(Path(s).absolute()) for s in (config.source or []))
    rc.write_text(
        "[run]\n"
        f"data_file = {Path(config.data_file).absolute()}\n"
        "parallel = True\n"
        "sigterm = True\n"
        "branch = False\n"
        "patch =\n    _exit\n    fork\n" + (f"source =\n    {sources}\n" if sources else ""),
        encoding="utf-8",
    )
    return {"COVERAGE_PROCESS_START": str(rc)}


class RegistryStack:
    """The registry API plus workers sharing one ``LLF_HOME``, Redis and hub."""

    def __init__(
        self,
        workdir: Path,
        *,
        redis_url: str,
        hf_endpoint: str,
        models_dir: Path | None = None,
        api_key: str | None = None,
        inference_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.home = self.workdir / "home"
        self.models_dir = Path(models_dir) if models_dir else self.home / "models"
        self.logs = self.workdir / "logs"
        self.port: int | None = None
        self.api: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []
        self.api_key = api_key
        base = {k: v for k, v in os.environ.items() if not k.startswith(("LLF_", "HF_", "COVERAGE_"))}
        base.pop("REDIS_URL", None)
        self.env: dict[str, str] = {
            **base,
            "LLF_HOME": str(self.home),
            "LLF_MODELS_DIR": str(self.models_dir),
            "LLF_CONFIG": str(self.home / "config.json"),
            "REDIS_URL": redis_url,
            "HF_ENDPOINT": hf_endpoint,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HOME": str(self.workdir / "hf-home"),
            # Nothing listens here unless a test passes a gateway: "unreachable" is the default.
            "LLF_INFERENCE_URL": inference_url or f"http://127.0.0.1:{free_port()}",
            "LLF_MODELS_DISK_MARGIN_BYTES": "0",
            # Tests import model directories from pytest's temp dirs (the default roots are home dirs).
            "LLF_MODELS_IMPORT_ROOTS": json.dumps([tempfile.gettempdir()]),
            "LLF_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **coverage_env(self.workdir),
        }
        if api_key:
            self.env["LLF_API_KEY"] = api_key
        self.env.update(env or {})

    # ------------------------------------------------------------ processes
    @property
    def url(self) -> str:
        if self.port is None:
            raise RegistryError("registry API not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def start_api(self, timeout: float = 30.0) -> str:
        """Start ``llf-models`` on a free port and wait for ``/readyz``."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = {**self.env, "LLF_MODELS_HOST": "127.0.0.1", "LLF_MODELS_PORT": str(self.port)}
        self.api = ManagedProcess("api", [str(VENV_BIN / "llf-models")], env, self.logs / "api.log", REPO_ROOT)
        self.wait_ready(timeout)
        return self.url

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.api is None or not self.api.alive:
                raise RegistryError(f"llf-models exited; log:\n{self.api.log_tail() if self.api else ''}")
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=2)
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.1)
        raise RegistryError(f"llf-models not ready after {timeout} s ({last}); log:\n{self.api.log_tail()}")

    def start_worker(self, name: str | None = None, extra_env: Mapping[str, str] | None = None) -> ManagedProcess:
        """Start one ``llf-models-worker`` and wait until it has registered in Redis."""
        index = len(self.workers)
        name = name or f"w{index}-{os.getpid()}-{time.monotonic_ns() % 100000}"
        argv = [str(VENV_BIN / "llf-models-worker"), "--name", name]
        env = {**self.env, **(extra_env or {})}
        worker = ManagedProcess(name, argv, env, self.logs / f"worker-{name}.log", REPO_ROOT)
        self.workers.append(worker)
        self._wait_worker_registered(worker)
        return worker

    def start(self, workers: int = 1) -> str:
        """The API plus ``workers`` workers; returns the API's base URL."""
        self.start_api()
        for _ in range(workers):
            self.start_worker()
        return self.url

    def _wait_worker_registered(self, worker: ManagedProcess, timeout: float = 30.0) -> None:
        from redis import Redis

        redis = Redis.from_url(self.env["REDIS_URL"])
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not worker.alive:
                    raise RegistryError(f"worker {worker.name} exited; log:\n{worker.log_tail()}")
                if redis.exists(f"llf:models:alive:{worker.name}"):
                    return
                time.sleep(0.05)
        finally:
            redis.close()
        raise RegistryError(f"worker {worker.name} did not register; log:\n{worker.log_tail()}")

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.api is not None:
            self.api.stop()

    def __enter__(self) -> RegistryStack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ API helpers
    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)


def wait_job(
    registry_url: str,
    job_id: str,
    *,
    states: Collection[str] = TERMINAL_JOB_STATES,
    timeout: float = 120.0,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Poll ``GET /v1/jobs/{id}`` until its state is one of ``states``; return the JobInfo JSON."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        response = httpx.get(f"{registry_url}/v1/jobs/{job_id}", headers=headers, timeout=10)
        response.raise_for_status()
        last.update(response.json())
        return dict(last) if last["state"] in states else None

    return wait_for(reached, timeout, lambda: f"job {job_id} to be {' or '.join(sorted(states))}: {last}", 0.1)


def import_tiny_model(
    registry_url: str, directory: Path, name: str, *, api_key: str | None = None, timeout: float = 120.0
) -> dict[str, Any]:
    """Import a model directory through the API (a worker must be running); return its ModelInfo."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.post(
        f"{registry_url}/v1/imports",
        json={"path": str(Path(directory).absolute()), "name": name, "link": False},
        headers=headers,
        timeout=30,
    )
    response.raise_for_status()
    job = wait_job(registry_url, response.json()["id"], timeout=timeout, api_key=api_key)
    if job["state"] != "finished":
        raise RegistryError(f"import of {directory} as {name} ended {job['state']}: {job.get('error')}")
    model = httpx.get(f"{registry_url}/v1/models/{name}", headers=headers, timeout=10)
    model.raise_for_status()
    result: dict[str, Any] = model.json()
    return result
