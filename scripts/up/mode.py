"""Which of the three situations we are in: Compose with a GPU, Compose on CPU, or local processes.

Detection asks the tools themselves (``docker info``, ``nvidia-smi``) rather than guessing from
files, because a Docker CLI without a reachable engine, or a GPU that Docker cannot use, is
common; ``LLF_MODE`` overrides it for CI and for people who know better.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Mode = Literal["compose", "local"]
Target = Literal["gpu", "cpu"]

# Runs a command and returns (exit code, stdout); injected so tests need no Docker.
Runner = Callable[[Sequence[str]], tuple[int, str]]


class ModeError(Exception):
    """LLF_MODE has a value we do not know."""


@dataclass(frozen=True)
class Choice:
    mode: Mode
    target: Target | None  # the image target in compose mode
    reason: str


def run_quietly(argv: Sequence[str], timeout: float = 20.0) -> tuple[int, str]:
    """Exit code and stdout of a command; a missing binary or a hang is a failure, not an error."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 127, ""
    return done.returncode, done.stdout


def docker_reachable(run: Runner) -> bool:
    return run(["docker", "info", "--format", "{{.ServerVersion}}"])[0] == 0


def nvidia_usable(run: Runner) -> bool:
    """A GPU that ``nvidia-smi`` lists AND a Docker engine with the nvidia runtime."""
    code, out = run(["nvidia-smi", "-L"])
    if code != 0 or "GPU" not in out:
        return False
    code, out = run(["docker", "info", "--format", "{{json .Runtimes}}"])
    if code != 0:
        return False
    try:
        runtimes = json.loads(out or "{}")
    except json.JSONDecodeError:
        return "nvidia" in out
    return isinstance(runtimes, dict) and "nvidia" in runtimes


def detect(env: Mapping[str, str], run: Runner = run_quietly) -> Choice:
    """Pick the mode: ``LLF_MODE`` when set, else Compose if Docker answers, else local."""
    forced = env.get("LLF_MODE", "").strip().lower()
    if forced not in ("", "compose", "local"):
        raise ModeError(f"LLF_MODE must be 'compose' or 'local', not {forced!r}")
    if forced == "local":
        return Choice("local", None, "LLF_MODE=local")
    if forced == "compose" or docker_reachable(run):
        why = "LLF_MODE=compose" if forced else "a Docker engine is reachable"
        if nvidia_usable(run):
            return Choice("compose", "gpu", f"{why}; NVIDIA GPU with the Docker nvidia runtime")
        return Choice("compose", "cpu", f"{why}; no GPU usable by Docker, so the CPU engine")
    return Choice("local", None, "no reachable Docker engine (`docker info` failed)")
