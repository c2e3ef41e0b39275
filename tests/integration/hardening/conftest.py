"""Fixtures of the hardening suite: both services in-process (for fuzzing) or as real processes.

In-process apps are built with ``create_app(settings)`` exactly as the services build them,
on the session's real Redis and hub stand-in. The gateway's "engine" is the suite's fake engine
(``tests/support/fake_engine.py``, vLLM's command-line shape) launched by the real supervisor
through ``engine_command``: every gateway route is reachable without a 40 s vLLM start, and
what is under test is the gateway, not vLLM.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.env import isolate_env
from tests.support.hub import HubStandIn
from tests.support.net import free_port, wait_for
from tests.support.registry import RegistryStack

API_KEY = "sk-hardening-0123456789abcdef"
HF_TOKEN = "hf_hardeningSecretToken0123456789"
UPSTREAM_MODEL = "llf-hardening/upstream"
UPSTREAM_CONTEXT = 256
REPO_ROOT = Path(__file__).resolve().parents[3]
FAKE_ENGINE = REPO_ROOT / "tests" / "support" / "fake_engine.py"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer's ~/.llf, keys or URLs leak into a test (settings read the environment)."""
    isolate_env(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("LLF_CONFIG", str(tmp_path / "no-config.json"))


def wait_until_ready(readyz: Callable[[], int], why: Callable[[], str], timeout: float = 60.0) -> None:
    """Wait until ``readyz()`` (an in-process app's ``/readyz`` status) says 200.

    The gateway starts its engine in the background: until then ``/readyz`` and every completion
    answer 503 with ``Retry-After``, as documented. Tests start from the serving state, so a slow
    start on a busy machine is not mistaken for a server error; ``why()`` explains a timeout.
    """
    wait_for(lambda: readyz() == 200, timeout, lambda: f"/readyz to answer 200: {why()}", interval=0.2)


def upstream_model_dir(root: Path) -> Path:
    """A directory the gateway accepts as a model (it only checks for config.json)."""
    directory = root / "upstream-model"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text("{}\n")
    return directory


def upstream_command() -> list[str]:
    return [sys.executable, str(FAKE_ENGINE), "--max-model-len", str(UPSTREAM_CONTEXT)]


@pytest.fixture
def registry_process(tmp_path: Path, redis_url: str, fresh_hub: HubStandIn) -> Iterator[RegistryStack]:
    """The registry API as a real process (no worker): what the gateway asks about models."""
    assert fresh_hub.url is not None
    stack = RegistryStack(tmp_path / "registry", redis_url=redis_url, hf_endpoint=fresh_hub.url)
    try:
        stack.start_api()
        yield stack
    finally:
        stack.stop()


def unreachable_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# ---------------------------------------------------------------- pulls held mid-download, disks that fill
def unique(prefix: str) -> str:
    """A repo id no other test (or earlier run on the session's Redis) has used."""
    return f"llf-hardening/{prefix}-{uuid.uuid4().hex[:8]}"


def pull(stack: RegistryStack, repo: str) -> dict[str, Any]:
    """``POST /v1/pulls``, accepted (202) or answered at once (200)."""
    answer = httpx.post(f"{stack.url}/v1/pulls", json={"repo": repo}, timeout=30)
    assert answer.status_code in (200, 202), answer.text
    return dict(answer.json())


def start_held_pull(stack: RegistryStack, hub: HubStandIn, repo: str, *, workers: int = 1) -> str:
    """Start the registry (API + ``workers`` workers) and a pull of ``repo``; its job id once the hub holds it.

    The test has told the hub to ``hold(repo, "weights.bin", ...)``: the job is mid-download,
    and stays there, while the test brings its fault.
    """
    stack.start_api()
    for _ in range(workers):
        stack.start_worker()
    job_id = str(pull(stack, repo)["job_id"])
    hub.wait_until_held(repo, "weights.bin", timeout=30)
    return job_id


Tmpfs = Callable[[int], Path]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """``tmpfs(mib)``: a tmpfs of that size (a model store that fills up), unmounted at the end.

    Root only: this suite runs as root in CI; elsewhere the test is skipped.
    """
    mounted: list[Path] = []

    def mount(mib: int) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        mountpoint = tmp_path / (f"small-disk-{len(mounted)}" if mounted else "small-disk")
        mountpoint.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(mountpoint)], check=True)
        mounted.append(mountpoint)
        return mountpoint

    try:
        yield mount
    finally:
        for mountpoint in mounted:
            for _ in range(20):
                if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode == 0:
                    break
                time.sleep(0.25)
            else:
                subprocess.run(["umount", "-l", str(mountpoint)], check=False)
