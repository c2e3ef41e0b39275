"""One engine process: its command line, its log, its exit, and a stop that leaves nothing behind.

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
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from llf_common.web import KEEP_ALIVE_S

from llf_inference.settings import EngineOptions, InferenceSettings

# Process groups of engines this process started and has not stopped yet.
_LIVE_GROUPS: set[int] = set()
# Secrets of the gateway that an engine has no use for.
_SCRUBBED_ENV = ("LLF_API_KEY", "HF_TOKEN")


@dataclass(frozen=True)
class EngineSpec:
    """Everything needed to (re)start one engine for one model."""

    model: str
    path: str
    options: EngineOptions
    launcher: tuple[str, ...]
    device: str = "cpu"
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: InferenceSettings, model: str, path: str) -> EngineSpec:
        env = dict(settings.engine_env)
        if settings.engine_offline:
            env.setdefault("HF_HUB_OFFLINE", "1")
            env.setdefault("TRANSFORMERS_OFFLINE", "1")
        return cls(
            model=model,
            path=path,
            options=settings.engine_options(model),
            launcher=tuple(settings.launcher),
            device=settings.resolved_device,
            env=env,
        )

    def command(self, port: int) -> list[str]:
        """The engine's argv: the model path served under its repo id on a loopback port."""
        o = self.options
        argv = [*self.launcher, "--model", self.path, "--served-model-name", self.model]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--disable-uvicorn-access-log"]
        if o.dtype:
            argv += ["--dtype", o.dtype]
        if o.max_model_len:
            argv += ["--max-model-len", str(o.max_model_len)]
        if o.gpu_memory_utilization is not None and self.device == "cuda":
            argv += ["--gpu-memory-utilization", str(o.gpu_memory_utilization)]
        if o.tensor_parallel_size and o.tensor_parallel_size > 1:
            argv += ["--tensor-parallel-size", str(o.tensor_parallel_size)]
        if o.enforce_eager:
            argv.append("--enforce-eager")
        return argv + list(o.extra_args or [])

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _SCRUBBED_ENV}
        env.update({"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"})
        # vLLM's uvicorn drops idle connections after 5 s, httpx's keep-alive expiry: the gateway
        # could send a request on a connection in the instant it closes (a 503 "ReadError" in the
        # soak). The engine keeps them as long as our services do, longer than the gateway reuses them.
        env["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"] = str(KEEP_ALIVE_S)
        if self.device == "cpu" and self.options.cpu_kvcache_space:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.options.cpu_kvcache_space)
        if self.options.cuda_visible_devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.options.cuda_visible_devices
        env.update(self.env)
        return env


def free_port() -> int:
    """A loopback port nobody listens on right now (a start that loses the race is retried)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    """A started engine: ``pid``, ``port``, the log tail and an ``on_exit`` callback.

    ``on_exit(returncode)`` is called from a waiter thread as soon as the leader exits, so a
    crash is noticed at once, not at the next health poll.
    """

    def __init__(
        self,
        spec: EngineSpec,
        port: int,
        *,
        tail_lines: int = 200,
        log_file: Path | None = None,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.spec = spec
        self.port = port
        self.argv = spec.command(port)
        self.tail: deque[str] = deque(maxlen=tail_lines)
        self.started_at = time.monotonic()
        self.returncode: int | None = None
        self._on_exit = on_exit
        self._log = log_file.open("ab") if log_file else None
        self.popen = subprocess.Popen(
            [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *self.argv],
            env=spec.environment(),
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


# ------------------------------------------------------------------ failure classification
@dataclass(frozen=True)
class Failure:
    """Why an engine failed, for a person: ``kind`` is stable, ``message`` is readable."""

    kind: str
    message: str
    permanent: bool  # restarting the same command cannot help

    def __str__(self) -> str:
        return self.message


_RULES: Sequence[tuple[str, re.Pattern[str], str, bool]] = (
    (
        "out_of_memory",
        re.compile(
            r"out of memory|OutOfMemoryError|MemoryError|Cannot allocate memory|No available memory for the cache"
            r"|larger than the available KV cache memory|insufficient memory|not enough memory"
            r"|less than requested memory|Decrease --kv-cache-memory-bytes",
            re.I,
        ),
        "out of memory: the engine could not fit the model and its KV cache; lower max_model_len, "
        "cpu_kvcache_space or gpu_memory_utilization, or serve a smaller model",
        True,
    ),
    (
        "unsupported_architecture",
        re.compile(
            r"Model architectures? .* (are|is) not supported|not supported (for now|in-tree)"
            r"|was supported in vLLM until"
            r"|Unsupported CPU attention configuration|Unrecognized model|model type .* not recognized",
            re.I,
        ),
        "unsupported model: this vLLM build cannot run the model's architecture or shape",
        True,
    ),
    (
        "bad_weights",
        re.compile(
            r"SafetensorError|HeaderTooLarge|Error while deserializing|safetensors_rust|invalid load key|"
            r"Cannot find any model weights|size mismatch|unexpected EOF|incomplete metadata|"
            r"MetadataIncompleteBuffer|file is not a zip|PytorchStreamReader failed|"
            r"Missing key|no file named .*(safetensors|\.bin)|config\.json.*(not|missing)|JSONDecodeError",
            re.I,
        ),
        "bad weights: the engine could not load the model files; re-verify or re-pull the model",
        True,
    ),
    (
        "engine_missing",
        re.compile(r"No module named '?vllm|llf: cannot start the engine", re.I),
        "the engine cannot start: set LLF_ENGINE_PYTHON to a Python with vllm, or run `make engine`",
        True,
    ),
    (
        "port_in_use",
        re.compile(r"Address already in use", re.I),
        "the engine's port was taken by another process",
        False,
    ),
)


def classify_failure(lines: Sequence[str], returncode: int | None) -> Failure:
    """Turn an engine's last log lines and exit status into one readable reason.

    The last matching line wins for each rule (the root cause is usually printed last) and
    the first rule in ``_RULES`` order that matches anywhere decides the kind.
    """
    for kind, pattern, message, permanent in _RULES:
        evidence = next((line for line in reversed(lines) if pattern.search(line)), None)
        if evidence is not None:
            return Failure(kind, f"{message} ({_strip_prefix(evidence)[:300]})", permanent)
    if returncode is not None and returncode == -signal.SIGKILL:
        return Failure("killed", "the engine was killed (SIGKILL; possibly the kernel's out-of-memory killer)", False)
    if returncode is not None and returncode < 0:
        return Failure("killed", f"the engine was killed by signal {signal.Signals(-returncode).name}", False)
    last = next((_strip_prefix(line) for line in reversed(lines) if _looks_like_error(line)), None)
    status = f"exited with code {returncode}" if returncode is not None else "stopped answering"
    detail = f": {last[:300]}" if last else ""
    return Failure("crashed", f"the engine {status}{detail}", False)


_PREFIX = re.compile(
    r"^\((?:APIServer|EngineCore\w*|Worker\w*|VllmWorker[-\w]*) pid=\d+\)\s*(?:\w+ \d\d-\d\d [\d:]+ \[[^]]+\] )?"
)


def _strip_prefix(line: str) -> str:
    return _PREFIX.sub("", line).strip()


def _looks_like_error(line: str) -> bool:
    text = _strip_prefix(line)
    return bool(re.match(r"^\w*(Error|Exception)\b|^ERROR|^RuntimeError|^ValueError", text)) or "Error:" in text
