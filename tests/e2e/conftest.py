"""The Compose stack under test: docker-compose.yml + the CPU override + the hub stand-in (compose.e2e.yml).

One stack for the e2e package (building and starting it is the expensive part), stopped after its
last test so that its engine does not run beside the rest of the suite; driven by testcontainers'
``DockerCompose`` under its own project name, with host ports chosen by Docker (published on
127.0.0.1 only) and every volume removed at the end. ``compose run`` of the CLI uses ``--no-deps``:
the services are up already, and letting Compose start them again could recreate them mid-test.
Without a reachable Docker engine and Compose v2 every test here is skipped with the reason.

Environment: ``LLF_E2E_KEEP=1`` leaves the stack running after the session (for debugging; remove
it with ``docker compose -p <project> down -v``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from llf_common.wire import TERMINAL_JOB_STATES
from testcontainers.compose import DockerCompose

ROOT = Path(__file__).resolve().parents[2]


def _load_buildenv() -> ModuleType:
    """deploy/buildenv.py (deploy/ is not a package): this machine's build settings for Compose."""
    spec = importlib.util.spec_from_file_location("llf_deploy_buildenv", ROOT / "deploy" / "buildenv.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


buildenv = _load_buildenv()

COMPOSE_FILES = ["docker-compose.yml", "deploy/compose.cpu.yml", "tests/e2e/compose.e2e.yml"]
TINY = "e2e/tiny"  # the model the session pulls, serves and chats with
WORKERS = 2


def docker_unavailable() -> str | None:
    """Why the e2e suite cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "docker CLI not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=20)
        if info.returncode != 0:
            return "no Docker engine reachable (`docker info` failed)"
        version = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20)
        if version.returncode != 0:
            return "Docker Compose v2 not installed (`docker compose version` failed)"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"Docker not usable: {exc}"
    return None


@dataclass
class Stack(DockerCompose):
    """``DockerCompose`` with a project name and a complete environment of its own (``os.environ`` untouched)."""

    project: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def compose_command_property(self) -> list[str]:  # type: ignore[override]
        return ["docker", "compose", "-p", self.project, *(a for f in self.compose_file_name or [] for a in ("-f", f))]

    def _run_command(self, cmd: str | list[str], context: str | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(cmd, capture_output=True, check=True, cwd=context or str(self.context), env=self.env)

    # ---------------------------------------------------------------- helpers for tests
    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker compose <args>`` in this project; output as text."""
        done = subprocess.run(
            [*self.compose_command_property, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.context,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def container_ids(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).stdout.split()

    def url(self, service: str, port: int) -> str:
        host_port = self.compose("port", service, str(port)).stdout.strip().splitlines()[0]
        return f"http://{host_port}"

    def inspect(self, container: str) -> dict[str, Any]:
        done = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True)
        return json.loads(done.stdout)[0]  # type: ignore[no-any-return]

    def wait_healthy(self, service: str, timeout: float = 180) -> None:
        """Every container of ``service`` running and healthy (restart policies bring killed ones back)."""
        deadline = time.monotonic() + timeout
        states: list[str] = []
        while time.monotonic() < deadline:
            ids = self.container_ids(service)
            states = [self.inspect(c)["State"].get("Health", {}).get("Status", "none") for c in ids]
            if ids and all(s == "healthy" for s in states):
                return
            time.sleep(1)
        raise AssertionError(f"{service} not healthy after {timeout} s: {states}\n{self.logs_tail(service)}")

    def logs_tail(self, service: str, lines: int = 40) -> str:
        done = self.compose("logs", "--no-color", "--tail", str(lines), service, check=False)
        return done.stdout + done.stderr


def _dropped(name: str) -> bool:
    """Variables of the developer's shell that would change the stack under test."""
    return name.startswith(("LLF_", "HF_", "COMPOSE_", "TESTCONTAINERS_")) or name == "REDIS_URL"


def stack_env() -> dict[str, str]:
    """The environment of every ``docker compose`` call: this machine's build settings + the test's knobs."""
    env = {k: v for k, v in os.environ.items() if not _dropped(k)}
    env.update(buildenv.compose_env())
    env.update(
        LLF_MODELS_PORT="",  # empty = Docker picks a free host port (on 127.0.0.1)
        LLF_INFERENCE_PORT="",
        LLF_WEB_PORT="",
        LLF_WORKERS=str(WORKERS),
        LLF_INFERENCE_SERVE_ON_START=TINY,  # a restarted gateway serves the session's model again
        LLF_REDIS_PASSWORD=secrets.token_hex(16),  # the stack's Redis refuses to start without one
        TESTCONTAINERS_RYUK_DISABLED="true",
        TESTCONTAINERS_CONNECTION_MODE="docker_host",
        TC_HOST="127.0.0.1",
    )
    return env


@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    reason = docker_unavailable()
    if reason:
        pytest.skip(reason)
    files = list(COMPOSE_FILES)
    if not buildenv.image_exists("redis:7"):
        files.insert(1, "deploy/compose.redis-local.yml")  # builds llf/redis:7 where Docker Hub is out of reach
    env = stack_env()
    project = f"llf-e2e-{uuid.uuid4().hex[:8]}"
    stack = Stack(context=str(ROOT), compose_file_name=files, build=True, wait=True, project=project, env=env)
    started = time.monotonic()
    # The CLI image (profile cli) is built up front so `compose run cli` never builds mid-test.
    stack.compose("--profile", "cli", "build", "cli", timeout=900)
    try:
        stack.start()
    except subprocess.CalledProcessError as exc:
        logs = stack.compose("logs", "--no-color", "--tail", "60", check=False)
        stack.stop()
        raise AssertionError(f"stack did not start: {exc.stderr.decode(errors='replace')}\n{logs.stdout}") from exc
    print(f"\ne2e: stack {project} up in {time.monotonic() - started:.0f} s", file=sys.stderr)
    try:
        yield stack
    finally:
        if os.environ.get("LLF_E2E_KEEP") == "1":
            print(f"e2e: keeping stack {project}", file=sys.stderr)
        else:
            stack.stop()


@pytest.fixture(scope="package")
def registry(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url("models", 8001), timeout=30) as client:
        yield client


@pytest.fixture(scope="package")
def gateway(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url("inference", 8000), timeout=60) as client:
        yield client


@pytest.fixture(scope="package")
def hub_api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url("hub", 8080), timeout=30) as client:
        yield client


# -------------------------------------------------------------------- registry helpers
def pull(registry: httpx.Client, repo: str) -> str:
    """Ask the registry for ``repo``; the job id (None when it is already present)."""
    reply = registry.post("/v1/pulls", json={"repo": repo})
    assert reply.status_code in (200, 202), reply.text
    body = reply.json()
    return str(body["job_id"]) if body.get("job_id") else ""


def job(registry: httpx.Client, job_id: str) -> dict[str, Any]:
    reply = registry.get(f"/v1/jobs/{job_id}")
    reply.raise_for_status()
    return reply.json()  # type: ignore[no-any-return]


def wait_job(
    registry: httpx.Client, job_id: str, timeout: float = 180, tolerate_errors: bool = False
) -> dict[str, Any]:
    """Poll until the job ends; tolerates a registry that is briefly away (Redis restarts) if asked."""
    deadline = time.monotonic() + timeout
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            info = job(registry, job_id)
        except httpx.HTTPError:
            if not tolerate_errors:
                raise
            time.sleep(1)
            continue
        if info["state"] in TERMINAL_JOB_STATES:
            return info
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not end within {timeout} s: {info}")


def model(registry: httpx.Client, repo: str) -> dict[str, Any]:
    reply = registry.get(f"/v1/models/{repo}")
    reply.raise_for_status()
    return reply.json()  # type: ignore[no-any-return]


def hub_sha256(hub_api: httpx.Client, repo: str) -> dict[str, str]:
    """path -> sha256 of the LFS files of ``repo`` as the hub stand-in serves them."""
    reply = hub_api.get(f"/api/models/{repo}/tree/main", params={"recursive": "true", "expand": "true"})
    reply.raise_for_status()
    return {e["path"]: e["lfs"]["oid"] for e in reply.json() if e.get("lfs")}


# -------------------------------------------------------------------- gateway helpers
def serve(gateway: httpx.Client, repo: str, timeout: float = 600) -> dict[str, Any]:
    reply = gateway.post("/v1/serve", json={"model": repo, "wait": True}, timeout=timeout)
    assert reply.status_code in (200, 202), reply.text
    return reply.json()  # type: ignore[no-any-return]


def wait_serving(gateway: httpx.Client, repo: str, timeout: float = 600) -> dict[str, Any]:
    """Poll GET /v1/status until ``repo`` has a ready replica (tolerating a gateway that is restarting)."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            status = gateway.get("/v1/status").json()
        except (httpx.HTTPError, ValueError):
            time.sleep(1)
            continue
        if repo in status.get("models", []):
            return status
        if status.get("state") == "failed":
            raise AssertionError(f"gateway failed to serve {repo}: {status.get('message')}")
        time.sleep(1)
    raise AssertionError(f"{repo} not served within {timeout} s: {status}")


@pytest.fixture(scope="package")
def served(stack: Stack, registry: httpx.Client, gateway: httpx.Client) -> str:
    """The tiny model pulled with `llf pull` (verified by the registry) and served with `llf serve`."""
    pulled = stack.compose("run", "--rm", "--no-deps", "-T", "cli", "pull", TINY, timeout=300)
    assert TINY in pulled.stdout + pulled.stderr
    info = model(registry, TINY)
    assert info["verified"] is True, info
    stack.compose("run", "--rm", "--no-deps", "-T", "cli", "serve", TINY, timeout=900)
    wait_serving(gateway, TINY)
    return TINY
