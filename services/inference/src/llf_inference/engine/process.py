"""One engine process: its log, its exit, and a stop that leaves nothing behind.

vLLM's API server forks an ``EngineCore`` and workers that outlive it when it is killed with
SIGKILL. So every engine runs in its own session (``start_new_session=True``) and is stopped
by process group: SIGTERM to the group, then SIGKILL to whatever is left, including orphans
that were re-parented away from the leader. The log is read by a thread (so a chatty engine
never blocks the event loop), kept as a ring buffer of the last lines for status and failure
reports, and copied to a file under the run directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import psutil

from llf_inference.engine.address import EngineAddress, free_port
from llf_inference.engine.spec import EngineSpec

__all__ = ["EngineProcess", "free_port", "group_members", "stop_all_engines", "stop_group"]

# Process groups of engines this process started and has not stopped yet.
_LIVE_GROUPS: set[int] = set()


# Runs first in the engine's process, then execs the engine: asks Linux to SIGTERM the engine if
# the gateway dies without stopping it (SIGKILL, OOM kill). A separate exec instead of
# ``preexec_fn``, which is unsafe in a process with threads. The setting survives execve.
# argv[1] is the gateway's pid: if the parent is no longer that process, the gateway died before
# prctl took effect and the engine must not start as an orphan. (Comparing with pid 1 would be
# wrong: in a container the gateway itself is pid 1.)
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "try: ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"  # 1 = PR_SET_PDEATHSIG
    "except Exception: pass\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit('llf: the gateway is gone; not starting the engine')\n"
    "try: os.execvp(sys.argv[2], sys.argv[2:])\n"
    "except OSError as exc: sys.exit(f'llf: cannot start the engine ({sys.argv[2]}): {exc.strerror}')\n"
)


class EngineProcess:
    """A started engine: ``pid``, ``address``, the log tail and an ``on_exit`` callback.

    ``on_exit(returncode)`` is called from a waiter thread as soon as the leader exits, so a
    crash is noticed at once, not at the next health poll. ``address`` is where it listens: a
    private Unix socket, removed again by ``stop()``, or a loopback port (a bare ``int``).
    ``api_key`` reaches vLLM as ``VLLM_API_KEY``: its OpenAI routes then refuse any caller
    without it (a 401), a second lock should the engine ever be reachable by someone else.
    """

    def __init__(
        self,
        spec: EngineSpec,
        address: EngineAddress | int,
        *,
        tail_lines: int = 200,
        log_file: Path | None = None,
        on_exit: Callable[[int], None] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.spec = spec
        self.address = EngineAddress(port=address) if isinstance(address, int) else address
        self.port = self.address.port  # None on a Unix socket
        self.argv = spec.command(self.address)
        self.tail: deque[str] = deque(maxlen=tail_lines)
        self.started_at = time.monotonic()
        self.returncode: int | None = None
        self._on_exit = on_exit
        self._log = log_file.open("ab") if log_file else None
        env = spec.environment()
        if api_key:  # the environment, not --api-key: an argv is visible to every local user in `ps`
            env["VLLM_API_KEY"] = api_key
        self.popen = subprocess.Popen(
            [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *self.argv],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.pgid = self.popen.pid
        _LIVE_GROUPS.add(self.pgid)
        threading.Thread(target=self._read_log, name=f"engine-log-{self.pid}", daemon=True).start()
        threading.Thread(target=self._wait, name=f"engine-wait-{self.pid}", daemon=True).start()

    def _read_log(self) -> None:
        assert self.popen.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for raw in self.popen.stdout:
                if self._log is not None:
                    self._log.write(raw)
                    self._log.flush()
                self.tail.append(raw.decode("utf-8", "replace").rstrip())
        if self._log is not None:
            self._log.close()

    def _wait(self) -> None:
        self.returncode = self.popen.wait()
        if self._on_exit is not None:
            self._on_exit(self.returncode)

    @property
    def alive(self) -> bool:
        return self.returncode is None and self.popen.poll() is None

    def log_tail(self, lines: int | None = None) -> list[str]:
        snapshot = list(self.tail)
        return snapshot if lines is None else snapshot[-lines:]

    def members(self) -> list[psutil.Process]:
        """Live processes of the engine's group: the leader, EngineCore, workers, orphans."""
        return group_members(self.pgid)

    def memory_bytes(self) -> int | None:
        """Resident memory of the whole group (``None`` when nothing runs)."""
        total = 0
        for proc in self.members():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total or None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, wait up to ``timeout``, SIGKILL the rest; idempotent, blocking."""
        stop_group(self.pgid, timeout, leader=self.popen)
        _LIVE_GROUPS.discard(self.pgid)
        self.address.remove()


def stop_all_engines(timeout: float = 10.0) -> None:
    """Stop every engine group this process started and did not stop (last line of defence)."""
    for pgid in list(_LIVE_GROUPS):
        stop_group(pgid, timeout)
        _LIVE_GROUPS.discard(pgid)


def group_members(pgid: int) -> list[psutil.Process]:
    """Every non-zombie process whose process group is ``pgid``."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) != pgid:
                continue
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def stop_group(pgid: int, timeout: float, *, leader: subprocess.Popen[bytes] | None = None) -> None:
    """Stop a process group for good: SIGTERM, grace period, SIGKILL, reap the leader."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if leader is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                leader.wait(0.05)
        if not group_members(pgid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    for proc in group_members(pgid):  # pragma: no cover - only if killpg raced a setpgid
        with contextlib.suppress(psutil.Error):
            proc.kill()
    if leader is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            leader.wait(5)
    deadline = time.monotonic() + 5  # SIGKILL is delivered asynchronously
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
