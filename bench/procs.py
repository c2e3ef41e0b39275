"""Processes a benchmark starts: free ports, readiness, CPU pinning, RSS, profiles, clean stop.

Every server a benchmark starts runs in its own session (process group), logs to a file, and is
stopped with its whole group in ``finally`` — a benchmark never leaves a process behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import psutil

from bench.report import PROFILES_DIR, ROOT, repo_relative
from tests.support.net import free_port as free_port  # the one free_port; cases import it from here

VENV_BIN = Path(sys.executable).parent
ENGINE_PYTHON = ROOT / ".venv-engine" / "bin" / "python"


class Proc:
    """A server subprocess in its own process group, with its output in ``log``."""

    def __init__(
        self,
        argv: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        cpus: set[int] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = log.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if cpus:
            pin(self.popen.pid, cpus)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._log_file.close()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.contextmanager
def running(*args: object, **kwargs: object) -> Iterator[Proc]:
    proc = Proc(*args, **kwargs)  # type: ignore[arg-type]
    try:
        yield proc
    finally:
        proc.stop()


def wait_http(url: str, proc: Proc | None = None, timeout: float = 60.0, headers: dict[str, str] | None = None) -> None:
    """Poll ``url`` until it answers 2xx; fail early (with the log tail) if ``proc`` died."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.argv[0]} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            if httpx.get(url, timeout=2, headers=headers).is_success:
                return
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s ({last})" + (f":\n{proc.tail()}" if proc else ""))


def pin(pid: int, cpus: set[int], children: bool = True) -> None:
    """Pin a process and its threads (with ``children``, its descendants' too) to ``cpus`` if the machine has them."""
    usable = cpus & set(range(os.cpu_count() or 1))
    if not usable:
        return
    with contextlib.suppress(psutil.Error):
        process = psutil.Process(pid)
        for target in [process, *(process.children(recursive=True) if children else [])]:
            with contextlib.suppress(psutil.Error):
                for thread in target.threads():
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(thread.id, usable)


def rss_bytes(pid: int, children: bool = True) -> int:
    """Resident memory of a process (plus its children): the soak's growth measure."""
    try:
        process = psutil.Process(pid)
        members = [process, *(process.children(recursive=True) if children else [])]
        return sum(p.memory_info().rss for p in members if p.is_running())
    except psutil.Error:
        return 0


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU time ``processes`` have used so far (a process that is gone adds 0)."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


class Profiler:
    """``py-spy record`` attached to a running process for a while: the 'why' of a missed target."""

    def __init__(self, pid: int, name: str, duration: float = 10.0, subprocesses: bool = True) -> None:
        PROFILES_DIR.mkdir(parents=True, exist_ok=True)
        self.path = PROFILES_DIR / f"{name}.svg"
        exe = VENV_BIN / "py-spy"
        self.argv = [str(exe), "record", "--pid", str(pid), "--duration", str(int(duration)), "--rate", "200",
                     *(["--subprocesses"] if subprocesses else []), "--nonblocking", "--format", "flamegraph",
                     "--output", str(self.path)]
        self.popen: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        if not (VENV_BIN / "py-spy").exists():
            return self
        self.popen = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # let py-spy attach before the load starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        if self.path.exists():  # the flame graph's title is py-spy's command line, absolute paths included
            self.path.write_text(repo_relative(self.path.read_text(encoding="utf-8")), encoding="utf-8")

    def result(self) -> str | None:
        return str(self.path.relative_to(ROOT)) if self.path.exists() else None
