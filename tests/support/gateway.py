"""The inference gateway (``llf-inference``) as a real subprocess for integration tests.

The gateway starts vLLM engines as children in their own process groups; this helper starts
the gateway itself in its own group on a free port with its own ``LLF_HOME``, and on stop
makes sure that neither the gateway nor any engine it started is left running.

Usage::

    with GatewayProcess(tmp_path, models_url=stack.url, engine_python=engine_python) as gateway:
        gateway.serve("local/tiny")                  # POST /v1/serve {"wait": true}
        OpenAI(base_url=gateway.openai_url, api_key="x").chat.completions.create(...)

``serve()`` waits for the model to be ready (a vLLM CPU engine takes ~40-150 s to start on a
busy 2-core machine); ``terminate()`` sends SIGTERM like a service manager would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil

from tests.support.net import free_port, wait_for
from tests.support.registry import coverage_env

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"
ENGINE_MODULE = "vllm.entrypoints.openai.api_server"


class GatewayError(RuntimeError):
    """The gateway exited, or did not get ready in time; the message carries its log tail."""


class GatewayProcess:
    """``llf-inference`` on 127.0.0.1:<free port>, its log in ``workdir/gateway.log``."""

    def __init__(
        self,
        workdir: Path,
        *,
        models_url: str | None = None,
        engine_python: Path | str | None = None,
        api_key: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.home = self.workdir / "home"
        self.log_path = self.workdir / "gateway.log"
        self.api_key = api_key
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.engine_groups: set[int] = set()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("LLF_", "HF_", "COVERAGE_"))}
        self.env: dict[str, str] = {
            **base,
            "LLF_HOME": str(self.home),
            "LLF_CONFIG": str(self.home / "config.json"),
            "LLF_INFERENCE_HOST": "127.0.0.1",
            "LLF_INFERENCE_PORT": str(self.port),
            "LLF_MODELS_URL": models_url or f"http://127.0.0.1:{free_port()}",
            "LLF_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **coverage_env(self.workdir),
        }
        if engine_python is not None:
            self.env["LLF_INFERENCE_ENGINE_PYTHON"] = str(engine_python)
        if api_key:
            self.env["LLF_API_KEY"] = api_key
        self.env.update(env or {})

    # ------------------------------------------------------------ process
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """Base URL for OpenAI clients (``.../v1``)."""
        return f"{self.url}/v1"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    @property
    def pid(self) -> int:
        assert self.process is not None, "gateway not started"
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        """Start ``llf-inference`` and wait until ``/healthz`` answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "llf-inference")],
                env=self.env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait for the gateway process to answer ``/healthz`` (not for any model)."""

        def up() -> bool:
            self._check_alive()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            return False

        try:
            wait_for(up, timeout, "llf-inference to answer /healthz", interval=0.1)
        except AssertionError as exc:
            raise GatewayError(f"{exc}; log:\n{self.log_tail()}") from None

    def _check_alive(self) -> None:
        if not self.alive:
            raise GatewayError(f"llf-inference exited; log:\n{self.log_tail()}")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM the gateway (only the gateway: it must stop its engines itself); its exit code."""
        assert self.process is not None
        self._remember_engines()
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise GatewayError(f"llf-inference ignored SIGTERM for {timeout} s; log:\n{self.log_tail()}") from None

    def kill(self) -> None:
        """Stop everything this helper started, whatever state it is in (for ``finally``)."""
        self._remember_engines()
        if self.process is not None:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(60)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        for pgid in self.engine_groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ------------------------------------------------------------ API helpers
    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    def status(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/v1/status", headers=self.headers, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def serve(
        self,
        model: str,
        *,
        replicas: int = 1,
        wait: bool = True,
        timeout: float = 600.0,
        replace: str | None = None,
        **engine: str,
    ) -> dict[str, Any]:
        """``POST /v1/serve`` (``replace``: swap that model out; ``engine``: runner/convert); with ``wait``, until
        ready (raises if it failed)."""
        response = httpx.post(
            f"{self.url}/v1/serve",
            json={"model": model, "replicas": replicas, "wait": wait, "replace": replace, **engine},
            headers=self.headers,
            timeout=timeout,
        )
        if response.status_code >= 400:
            raise GatewayError(f"serve {model}: {response.status_code} {response.text}\nlog:\n{self.log_tail()}")
        result: dict[str, Any] = response.json()
        self._remember_engines()
        return result

    def wait_model(self, model: str, timeout: float = 600.0) -> dict[str, Any]:
        """Poll ``/v1/status`` until ``model`` has a ready replica."""
        status: dict[str, Any] = {}

        def ready() -> dict[str, Any] | None:
            self._check_alive()
            with contextlib.suppress(httpx.HTTPError):
                status.clear()
                status.update(self.status())
                if model in status["models"]:
                    self._remember_engines()
                    return dict(status)
            return None

        try:
            return wait_for(ready, timeout, f"{model} to have a ready replica", interval=0.25)
        except AssertionError as exc:
            raise GatewayError(f"{exc}: {status}\nlog:\n{self.log_tail()}") from None

    def engine_pids(self) -> list[int]:
        """Leader pids of the engines the gateway reports as running."""
        return [r["pid"] for r in self.status()["replicas"] if r.get("pid")]

    def _remember_engines(self) -> None:
        if self.alive:
            with contextlib.suppress(httpx.HTTPError, KeyError):
                self.engine_groups.update(self.engine_pids())


def engine_socket(pid: int) -> Path | None:
    """The Unix socket an engine listens on (its ``--uds``), or ``None`` for an engine on a port."""
    argv = psutil.Process(pid).cmdline()
    return Path(argv[argv.index("--uds") + 1]) if "--uds" in argv else None


def tcp_listeners(pgid: int) -> list[tuple[int, str, str]]:
    """``(pid, process name, "ip:port")`` of every TCP socket listening in a process group (an
    engine's: its API server, EngineCore and workers), read from each process's own descriptors."""
    found = []
    for pid in psutil.pids():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(pid) != pgid:
                continue
            proc = psutil.Process(pid)
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((pid, proc.name(), f"{conn.laddr.ip}:{conn.laddr.port}"))
    return found


def engine_processes() -> list[psutil.Process]:
    """Every vLLM engine process on the machine (other tests' and other users' too: filter them)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "name"]):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.status() != psutil.STATUS_ZOMBIE and (
                ENGINE_MODULE in cmdline or (proc.info["name"] or "").startswith("VLLM::")
            ):
                found.append(proc)
    return found


def leftover_engines(pgids: set[int], marker: str | None = None) -> list[psutil.Process]:
    """Engine processes still alive in the given process groups (incl. orphaned EngineCores and
    workers, which keep the group of the engine that forked them), or whose command line names
    ``marker`` (e.g. a model directory only this test uses)."""
    result = []
    for proc in engine_processes():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) in pgids or (marker and marker in " ".join(proc.cmdline())):
                result.append(proc)
    return result
