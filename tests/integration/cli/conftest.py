"""``llf`` as a real subprocess against the real services (registry + workers, gateway + vLLM CPU engine).

The stack is module-scoped: engine starts are the slow part (~40-80 s each), so one gateway is
shared by the tests of a module, and the tests of a module may build on each other in file
order (documented at the top of each module).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.support.hub import HubStandIn
from tests.support.net import free_port
from tests.support.redis_server import RedisServer
from tests.support.registry import RegistryStack, coverage_env

LLF = Path(sys.executable).parent / "llf"


@dataclass
class Llf:
    """Runs ``llf`` with its own ``LLF_HOME`` and the stack's URLs; nothing from the developer's env."""

    home: Path
    models_url: str
    inference_url: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("LLF_", "HF_", "COVERAGE_"))}
        return {
            **base,
            "LLF_HOME": str(self.home),
            "LLF_MODELS_URL": self.models_url,
            "LLF_INFERENCE_URL": self.inference_url,
            "PYTHONUNBUFFERED": "1",
            **coverage_env(self.home),
            **self.extra,
        }

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 300, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """One run; stdin is ``input`` when given (a pipe), else empty (never the test's terminal)."""
        return subprocess.run(
            [str(LLF), *args], env={**self.env, **env}, input=input, capture_output=True, text=True,
            stdin=subprocess.DEVNULL if input is None else None, timeout=timeout, check=False,
        )  # fmt: skip

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def held_until(
        self,
        hub: HubStandIn,
        repo: str,
        path: str,
        *args: str,
        seen: str = "downloading",
        timeout: float = 300,
        **env: str,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``llf *args`` while the hub holds ``path`` after its first bytes; release it once a
        stderr line starts with ``seen``.

        The download is then seen in progress however fast the machine is (a throttled hub raced
        the clock). If the line never comes, the hold is released at ``timeout`` so the run ends
        and the test's own assertions say what was missing.
        """
        hub.hold(repo, path, after_bytes=4096)
        watchdog = threading.Timer(timeout, hub.release)
        watchdog.start()
        try:
            child = subprocess.Popen(
                [str(LLF), *args], env={**self.env, **env}, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert child.stderr is not None and child.stdout is not None
            err: list[str] = []
            for line in child.stderr:
                err.append(line)
                if line.startswith(seen):
                    hub.release(repo, path)
            out = child.stdout.read()
            returncode = child.wait(timeout)
        finally:
            watchdog.cancel()
            hub.release(repo, path)
        return subprocess.CompletedProcess(child.args, returncode, out, "".join(err))

    def spawn(self, *args: str, **env: str) -> pexpect.spawn:
        """``llf`` in a pseudo-terminal (a TTY: prompt_toolkit, rich bars), for interactive tests.

        Ctrl-C is reset to its default in the child, as on a user's terminal: a test run started in
        the background by a shell without job control has SIGINT ignored, and that is inherited.
        """
        child = pexpect.spawn(
            str(LLF), list(args), env={**self.env, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1", **env},
            encoding="utf-8", timeout=120, dimensions=(40, 160), preexec_fn=_default_ctrl_c,
        )  # fmt: skip
        return child


def _default_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def fresh_redis(redis_server: RedisServer) -> str:
    if not redis_server.running:
        redis_server.start()
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(scope="module")
def registry(redis_server: RedisServer, hub: HubStandIn, tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[RegistryStack]:  # fmt: skip
    """The registry API and one worker on an empty model store, for one module."""
    assert hub.url is not None
    stack = RegistryStack(tmp_path_factory.mktemp("cli-registry"), redis_url=fresh_redis(redis_server),
                          hf_endpoint=hub.url)  # fmt: skip
    try:
        stack.start_api()
        stack.start_worker()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def llf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llf-home")


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"
