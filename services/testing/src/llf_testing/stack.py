"""``LlfStack``: the whole Compose stack (Redis, registry, workers, gateway) for tests that pull.

The project's own ``docker-compose.yml`` + ``deploy/compose.cpu.yml`` (or ``compose.gpu.yml``),
under a project name of its own, with host ports chosen by Docker; images are never built here
(present locally from ``scripts/docker-images.sh``, or pulled from ``LLF_IMAGE_PREFIX``'s registry).
The model store is a named volume shared across runs (``llf-testing-models``): what one run pulled,
verified by the registry's sha256 check, the next finds there. ``down -v`` at the end removes the
project's own volumes, never that one.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from llf_testing import models as m
from llf_testing.images import host_has_nvidia, local_tags
from llf_testing.labels import OWNER, STACK
from llf_testing.version import __version__
from llf_testing.wait import LlfStartError

TERMINAL = ("finished", "failed", "canceled", "stopped")
LABELLED_SERVICES = ("redis", "models", "worker", "inference")


def find_compose_dir(start: Path | None = None, env: Mapping[str, str] = os.environ) -> Path:
    """The directory of llf's ``docker-compose.yml``: ``LLF_COMPOSE_DIR``, else a parent of this file."""
    if env.get("LLF_COMPOSE_DIR"):
        return Path(env["LLF_COMPOSE_DIR"])
    here = start or Path(__file__).resolve()
    for directory in here.parents:
        if (directory / "docker-compose.yml").is_file() and (directory / "deploy" / "compose.cpu.yml").is_file():
            return directory
    raise FileNotFoundError("llf's docker-compose.yml not found: set LLF_COMPOSE_DIR to an llf checkout")


def override(models_volume: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """The Compose override: the shared model volume (external: ``down -v`` keeps it) and run labels."""
    return {
        "services": {service: {"labels": dict(labels)} for service in LABELLED_SERVICES},
        "volumes": {"models": {"external": True, "name": models_volume}},
    }


def stack_env(base: Mapping[str, str], local: set[str], version: str = __version__) -> dict[str, str]:
    """The environment of every ``docker compose`` call: images of this version (or ``latest``)."""
    env = dict(base)
    env.setdefault("LLF_IMAGE_PREFIX", "llf")
    if not env.get("LLF_TAG"):
        prefix = env["LLF_IMAGE_PREFIX"].rstrip("/")
        env["LLF_TAG"] = version if f"{prefix}/models:{version}" in local else "latest"
    if "redis:7" not in local and "llf/redis:7" in local:
        env.setdefault("LLF_REDIS_IMAGE", "llf/redis:7")
    # Empty = a free port on 127.0.0.1: a fixed one collides with `make up` or another LlfStack.
    env.update(LLF_MODELS_PORT="", LLF_INFERENCE_PORT="", LLF_WEB_PORT="")
    if not env.get("LLF_REDIS_PASSWORD"):  # the stack's Redis refuses to start without one
        env["LLF_REDIS_PASSWORD"] = secrets.token_hex(16)
    return env


class LlfStack:
    """``docker compose up`` of llf's stack; ``pull`` a model through its registry (verified).

    ``files``: extra Compose files after the project's (a test's hub stand-in); ``env``: extra
    variables for Compose (``HF_ENDPOINT``, ``HF_TOKEN``).
    """

    def __init__(
        self,
        *,
        compose_dir: str | Path | None = None,
        files: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        models_volume: str = m.MODELS_VOLUME,
        gpu: bool | None = None,
        project: str | None = None,
        startup_timeout: float = 600.0,
    ) -> None:
        self.compose_dir = Path(compose_dir) if compose_dir else find_compose_dir()
        self.extra_files = list(files)
        self.extra_env = dict(env or {})
        self.models_volume = models_volume
        self._gpu = gpu
        self.project = project or f"llf-testing-{uuid.uuid4().hex[:8]}"
        self.startup_timeout = startup_timeout
        self.variant = "cpu"
        self._override: Path | None = None
        self._env: dict[str, str] = {}
        self._client: Any = None

    def docker(self) -> Any:
        """A ``docker.DockerClient`` (from the environment, like testcontainers)."""
        if self._client is None:
            import docker

            self._client = docker.from_env()
        return self._client

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LlfStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LlfStack:
        from llf_testing.reaper import reap

        client = self.docker()
        reap(client)
        gpu = self._gpu if self._gpu is not None else host_has_nvidia(client.info())
        self.variant = "gpu" if gpu else "cpu"
        try:
            client.volumes.get(self.models_volume)
        except Exception:
            client.volumes.create(self.models_volume, labels={"org.llf.testing.volume": "models"})
        handle, name = tempfile.mkstemp(prefix="llf-testing-", suffix=".compose.json")
        with os.fdopen(handle, "w") as out:
            json.dump(override(self.models_volume, {**OWNER.labels("stack"), STACK: self.project}), out)
        self._override = Path(name)
        self._env = stack_env({**os.environ, **self.extra_env}, local_tags(client))
        try:
            self.compose("up", "-d", "--pull", "missing", "--no-build", "--wait", timeout=self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._override is not None:
            self.compose("down", "-v", "--remove-orphans", timeout=180, check=False)
            self._override.unlink(missing_ok=True)
            self._override = None

    # ------------------------------------------------------------------ compose
    def files(self) -> list[str]:
        gpu_or_cpu = f"deploy/compose.{self.variant}.yml"
        names = ["docker-compose.yml", gpu_or_cpu, *self.extra_files]
        if self._override is not None:
            names.append(str(self._override))
        return names

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker compose -p <project> -f ... <args>``; raises with its output when it fails."""
        argv = ["docker", "compose", "-p", self.project, *(a for f in self.files() for a in ("-f", f)), *args]
        done = subprocess.run(
            argv, cwd=self.compose_dir, env=self._env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            logs = subprocess.run(
                [*argv[: argv.index(args[0])], "logs", "--no-color", "--tail", "40"],
                cwd=self.compose_dir, env=self._env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            raise LlfStartError(f"docker compose {' '.join(args)} -> {done.returncode}\n{done.stderr}\n{logs.stdout}")
        return done

    def url(self, service: str, port: int) -> str:
        host_port = self.compose("port", service, str(port)).stdout.strip().splitlines()[0]
        return f"http://{host_port.replace('0.0.0.0', '127.0.0.1')}"

    @property
    def models_url(self) -> str:
        return self.url("models", 8001)

    @property
    def inference_url(self) -> str:
        return self.url("inference", 8000)

    @property
    def network(self) -> str:
        """The stack's default network (a container joined to it reaches ``models:8001``, ``hub:8080``)."""
        return f"{self.project}_default"

    # ------------------------------------------------------------------ registry
    def pull(self, repo: str, timeout: float = 1800) -> dict[str, Any]:
        """Pull ``repo`` through the registry (sha256-verified) unless present; its record (``path``, ``sha``)."""
        m.check_repo(repo)
        with httpx.Client(base_url=self.models_url, timeout=30, headers=_auth()) as registry:
            reply = registry.post("/v1/pulls", json={"repo": repo})
            if reply.status_code not in (200, 202):
                raise LlfStartError(f"pull of {repo} refused: HTTP {reply.status_code} {reply.text[:500]}")
            job_id = reply.json().get("job_id")
            deadline = time.monotonic() + timeout
            state: dict[str, Any] = {}
            while job_id:
                state = registry.get(f"/v1/jobs/{job_id}").json()
                if state.get("state") in TERMINAL:
                    break
                if time.monotonic() > deadline:
                    raise LlfStartError(f"pull of {repo} not finished within {timeout:.0f} s: {state}")
                time.sleep(1)
            info = registry.get(f"/v1/models/{repo}")
            if info.status_code != 200 or not info.json().get("verified"):
                raise LlfStartError(f"pull of {repo} did not give a verified model: {state} {info.text[:500]}")
            return info.json()  # type: ignore[no-any-return]


def _auth() -> dict[str, str]:
    key = os.environ.get("LLF_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}
