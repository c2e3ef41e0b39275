"""A real ``redis-server`` for integration tests: free loopback port, AOF on, owned data dir.

Why not fakeredis or a fixed 6379: RQ's blocking pops, Lua scripts and persistence are what
the registry depends on, and tests run next to other engineers' servers. AOF with
``appendfsync always`` makes ``kill()`` (SIGKILL) + ``start()`` a faithful crash test: every
acknowledged write survives. Like every llf Redis it requires a password (generated per server
unless given, in its config file and never on its command line); ``url`` carries it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.support.net import free_port

REDIS_SERVER = os.environ.get("LLF_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisError(RuntimeError):
    """redis-server did not start, or answered a command with an error."""


class RedisServer:
    """One redis-server process whose data lives in ``workdir`` (config, AOF, log)."""

    host = "127.0.0.1"

    def __init__(
        self, workdir: Path, port: int | None = None, *, executable: str = REDIS_SERVER, password: str | None = None
    ) -> None:
        self.workdir = Path(workdir)
        self.port = port
        self.executable = executable
        self.password = password or secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        if self.port is None:
            raise RedisError("redis-server has no port yet: call start() first")
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    @property
    def url_without_password(self) -> str:
        """What an outsider who does not know the password would connect with."""
        return self.url.replace(f":{self.password}@", "")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def start(self, timeout: float = 20.0) -> str:
        """Start (or start again, same port and data) and wait until it answers PING."""
        if self.running:
            return self.url
        if not Path(self.executable).exists() and shutil.which(self.executable) is None:
            raise RedisError(f"redis-server not found at {self.executable}: apt-get install redis-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        fixed = self.port  # once started, the port stays: restart() keeps the URL valid
        attempts = 1 if fixed is not None else 3
        for attempt in range(attempts):
            port = fixed if fixed is not None else free_port(self.host)
            try:
                self._spawn(port, timeout)
            except RedisError:
                self.port = fixed
                if attempt == attempts - 1:
                    raise
                continue  # lost a race for the free port; take another
            return self.url
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown (SIGTERM: redis fsyncs the AOF and exits); SIGKILL if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(timeout)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, like a crash or an OOM kill: no shutdown, only what the AOF already has."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def restart(self, timeout: float = 20.0) -> str:
        """Stop and start again on the same port with the same data."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ commands
    def command(self, *args: str, timeout: float = 5.0) -> str:
        """Send one command over a fresh connection; return the reply's first line (no redis-py)."""
        if self.port is None:
            raise RedisError("redis-server is not started")
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.sendall(_resp("AUTH", self.password) + _resp(*args))
            reply = b""
            while reply.count(b"\r\n") < 2:  # AUTH's reply, then the first line of the command's
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        auth, _, rest = reply.partition(b"\r\n")
        if auth != b"+OK":
            raise RedisError(f"redis AUTH: {auth.decode(errors='replace').lstrip('-')}")
        line = rest.split(b"\r\n", 1)[0].decode(errors="replace")
        if line.startswith("-"):
            raise RedisError(f"redis {args[0]}: {line[1:]}")
        return line

    def ping(self) -> bool:
        try:
            return self.command("PING", timeout=1.0) == "+PONG"
        except (OSError, RedisError):
            return False

    def flushall(self) -> None:
        self.command("FLUSHALL", "SYNC")

    # ------------------------------------------------------------ internals
    def _config(self, port: int) -> str:
        return "\n".join(
            [
                f"port {port}",
                f"bind {self.host}",
                "protected-mode yes",
                "daemonize no",
                f"dir {self.workdir}",
                f"logfile {self.log_path}",
                "appendonly yes",
                "appendfsync always",
                'save ""',
                "loglevel notice",
                f"requirepass {self.password}",
                "",
            ]
        )

    def _spawn(self, port: int, timeout: float) -> None:
        conf = self.workdir / "redis.conf"
        conf.write_text(self._config(port), encoding="utf-8")
        conf.chmod(0o600)
        self.port = port
        self.process = subprocess.Popen(
            [self.executable, str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: signals to the test runner do not reach it
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.ping():
                return
            time.sleep(0.05)
        self.kill()
        raise RedisError(f"redis-server on port {port} did not come up; log: {self._log_tail()}")

    def _signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def _log_tail(self, lines: int = 10) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _resp(*args: str) -> bytes:
    """One command in Redis's wire protocol."""
    return f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(arg.encode())}\r\n".encode() + arg.encode() + b"\r\n" for arg in args
    )
