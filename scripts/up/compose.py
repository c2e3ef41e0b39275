"""Compose mode: the stack as containers, with the GPU or the CPU engine image.

The files are the docker engineer's (``docker-compose.yml`` plus one override per target in
``deploy/``); this module picks the override, has the images pulled or built by
``scripts/docker-images.sh`` (the script CI runs: a machine without an image registry builds its
base images locally), and runs ``docker compose``.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from scripts.up import ui
from scripts.up.mode import Choice, Runner, Target, run_quietly

OVERRIDES: dict[str, str] = {"gpu": "deploy/compose.gpu.yml", "cpu": "deploy/compose.cpu.yml"}
IMAGES_SCRIPT = "scripts/docker-images.sh"
# Where the demo model is written inside the stack: the model store volume, which the
# registry and its workers both mount, so the import job can read it whichever worker runs it.
DEMO_SOURCE_SH = 'd="${LLF_MODELS_DIR:-${LLF_HOME:-$HOME/.llf}/models}/.demo-src/llf-demo-tiny"'


class ComposeError(Exception):
    """Compose is missing or a command failed."""


def machine_env(repo: Path) -> dict[str, str]:
    """Build variables this machine needs (local base image, pip mirror ...), from deploy/buildenv.py.

    The docker engineer's helper knows them; a missing or failing helper means the defaults apply.
    """
    helper = repo / "deploy" / "buildenv.py"
    if not helper.exists():
        return {}
    spec = importlib.util.spec_from_file_location("llf_deploy_buildenv", helper)
    if spec is None or spec.loader is None:
        return {}
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        found = module.compose_env()
    except Exception:  # a helper bug must not stop `make up`; Compose's defaults remain
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def compose_command(run: Runner = run_quietly) -> list[str]:
    """``docker compose`` (v2 plugin) or a standalone ``docker-compose``."""
    if run(["docker", "compose", "version"])[0] == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise ComposeError("Docker Compose v2 is not installed: install the compose plugin (or set LLF_MODE=local)")


def files(repo: Path, target: Target) -> list[str]:
    """``-f`` arguments: the base file plus the target's override, when it exists."""
    argv = ["-f", str(repo / "docker-compose.yml")]
    override = repo / OVERRIDES[target]
    if override.exists():
        argv += ["-f", str(override)]
    return argv


def base(repo: Path, target: Target, run: Runner = run_quietly) -> list[str]:
    return [*compose_command(run), "--project-directory", str(repo), *files(repo, target)]


def build_images(repo: Path, target: Target, env: Mapping[str, str], log_dir: Path) -> None:
    """Pull or build every image the stack runs, with the same script and steps as CI.

    Its stages go to the terminal; on failure the error names the reason (the script's last line).
    """
    argv = ["bash", str(repo / IMAGES_SCRIPT), "--target", target]
    done = subprocess.run(
        argv, cwd=repo, env={**env, "LLF_DOCKER_LOG_DIR": str(log_dir)}, stderr=subprocess.PIPE, text=True, check=False
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1].removeprefix("docker-images: ") if lines else f"exit {done.returncode}"
        raise ComposeError(f"{reason} (logs: {log_dir})")


def with_images(
    choice: Choice,
    env: Mapping[str, str],
    build: Callable[[Target], None],
) -> Choice:
    """Compose mode once its images are there; local mode, said in one line, when they cannot be.

    ``build`` pulls or builds the images (``build_images``). A Compose mode the user forced
    (``LLF_MODE=compose``) fails instead of falling back.
    """
    if choice.mode != "compose" or choice.target is None:
        return choice
    try:
        build(choice.target)
    except ComposeError as exc:
        if env.get("LLF_MODE", "").strip().lower() == "compose":
            raise
        ui.warn(f"Compose mode cannot have its images here: {exc}; running local mode instead")
        return Choice("local", None, "the Compose images can be neither pulled nor built here")
    return choice


def up(repo: Path, target: Target, env: Mapping[str, str]) -> None:
    """Start (or update) the stack from the images ``build_images`` left (built, never pulled here)."""
    if not (repo / "docker-compose.yml").exists():
        raise ComposeError(f"{repo / 'docker-compose.yml'} does not exist yet; use LLF_MODE=local")
    argv = [*base(repo, target), "up", "-d", "--pull", "never", "--wait"]
    done = subprocess.run(argv, cwd=repo, env=dict(env), check=False)
    if done.returncode != 0:
        raise ComposeError(f"`{' '.join(argv)}` failed (exit {done.returncode}); see `make logs`")


def serve_on_start(repo: Path, target: Target, env: Mapping[str, str]) -> None:
    """Recreate the gateway container if its ``LLF_INFERENCE_SERVE_ON_START`` (from ``env``) changed."""
    argv = [*base(repo, target), "up", "-d", "--wait", "inference"]
    done = subprocess.run(argv, cwd=repo, env=dict(env), check=False)
    if done.returncode != 0:
        raise ComposeError(f"`{' '.join(argv)}` failed (exit {done.returncode}); see `make logs`")


def down(repo: Path, target: Target, env: Mapping[str, str]) -> int:
    return subprocess.run([*base(repo, target), "down"], cwd=repo, env=dict(env), check=False).returncode


def logs_command(repo: Path, target: Target) -> list[str]:
    return [*base(repo, target), "logs", "-f", "--tail", "40"]


def write_demo(repo: Path, target: Target, env: Mapping[str, str], seed: int = 0) -> str:
    """Write the demo model inside the worker container; returns its path there."""
    script = f'{DEMO_SOURCE_SH}; llf-tiny-model "$d" --seed {seed} >&2 && printf %s "$d"'
    argv = [*base(repo, target), "exec", "-T", "worker", "sh", "-c", script]
    done = subprocess.run(argv, cwd=repo, env=dict(env), capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise ComposeError(f"writing the demo model in the worker container failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]
