"""vllm-router on loopback: the one way the tests and the benchmarks start it and wait for it.

The router (PyPI ``vllm-router``, the ``router`` dependency group) is the reference data plane
the gateway is measured against and what the fleet deploys. Three places started it with their
own copy of the command line and the readiness loop; here it is once: its own free ports (the
Prometheus port too, whose default would collide between two routers), its own session (so
``stop`` takes whatever it spawned), a readiness wait with a deadline that fails early, with the
log's tail, when the router exits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.net import free_port, wait_for

READY_TIMEOUT_S = 60.0


def router_binary() -> str:
    """The venv's ``vllm-router`` (also when the venv is not on PATH), else the one on PATH."""
    beside = Path(sys.executable).parent / "vllm-router"
    binary = str(beside) if beside.exists() else shutil.which("vllm-router")
    assert binary, "vllm-router is not installed (the router group of pyproject.toml declares it)"
    return binary


@dataclass
class Router:
    """A running vllm-router: its process, its base URL and its Prometheus URL."""

    process: subprocess.Popen[bytes]
    url: str
    metrics_url: str
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the router's group, SIGKILL what is left after ``timeout``; safe to call twice."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 15.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait)
                return


def start_router(
    worker_urls: Sequence[str], policy: str, *extra_args: str, log: Path, timeout: float = READY_TIMEOUT_S
) -> Router:
    """Start vllm-router with ``policy`` in front of ``worker_urls`` and wait until ``/readiness`` is 200.

    ``extra_args`` go on the command line as they are (``--api-key``, circuit-breaker settings …).
    The caller stops it (``stop()`` in ``finally``, or ``running_router``); a router that does not
    get ready is stopped here before the failure is raised.
    """
    port, metrics_port = free_port(), free_port()
    argv = [router_binary(), "--host", "127.0.0.1", "--port", str(port), "--policy", policy,
            "--worker-urls", *worker_urls, "--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics_port),
            *extra_args]  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    router = Router(process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", log)

    def ready() -> bool:
        if not router.alive():
            raise AssertionError(f"vllm-router exited with {process.returncode}:\n{router.tail()}")
        try:
            return httpx.get(f"{router.url}/readiness", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, timeout, lambda: f"vllm-router's /readiness to answer 200; log:\n{router.tail()}", 0.2)
    except BaseException:
        router.stop()
        raise
    return router


@contextlib.contextmanager
def running_router(
    worker_urls: Sequence[str], policy: str, *extra_args: str, log: Path, timeout: float = READY_TIMEOUT_S
) -> Iterator[Router]:
    """``start_router`` for a ``with`` block: the router is stopped when the block ends, whatever happened."""
    router = start_router(worker_urls, policy, *extra_args, log=log, timeout=timeout)
    try:
        yield router
    finally:
        router.stop()
