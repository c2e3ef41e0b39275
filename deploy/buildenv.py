"""The environment for building and running llf's images on *this* machine.

docker-compose.yml reads a few variables at build time; their defaults suit a normal machine with
Docker Hub and the public indexes. A machine behind a TLS-intercepting proxy, with no image registry
or with its own package mirror differs, and this module derives what Compose needs from what the host
already uses:

``LLF_BASE_IMAGE``       ``llf/base:bookworm`` when that local image exists (scripts/ci-docker.sh builds it
                         with debootstrap) and no public ``python`` image is available.
``LLF_REDIS_IMAGE``      ``llf/redis:7`` when that local image exists and ``redis:7`` does not.
``LLF_BUILD_CA_BUNDLE``  the CA bundle the host's pip trusts (pip config ``cert`` / ``PIP_CERT``), handed
                         to builds as a BuildKit secret.
``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``  the host pip's indexes, minus ``file://`` ones that a build
                         cannot see.
``LLF_TORCH_INDEX_URL``  empty when ``deploy/wheels/`` holds the CPU torch wheel (``--stage-wheels`` copies
                         it from the host pip's ``find-links`` folders), so the build asks no other index.

Variables already set in the environment win. ``python3 deploy/buildenv.py [--stage-wheels]`` prints
``KEY=VALUE`` lines (a Compose ``--env-file``); ``--export`` prints ``export KEY='VALUE'`` for a shell;
``compose_env()`` returns them for Python callers (the e2e tests, ``make up``). Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / "deploy" / "wheels"
LOCAL_BASE = "llf/base:bookworm"
PUBLIC_BASE = "python:3.11-slim-bookworm"
LOCAL_REDIS = "llf/redis:7"
PUBLIC_REDIS = "redis:7"
TORCH_WHEEL_GLOB = "torch-*+cpu-cp311-*.whl"


def image_exists(image: str) -> bool:
    """True when the Docker engine has ``image`` locally (False when there is no engine)."""
    try:
        done = subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def pip_config() -> dict[str, str]:
    """pip's effective options (files, then ``PIP_*`` environment), keyed by option name."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    options: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        section, _, name = key.rpartition(".")
        if section in ("global", "install", "download", ":env:") and value:
            options[name] = value.strip().strip("'\"")
    return options


def _network_urls(value: str) -> str:
    return " ".join(url for url in value.split() if not url.startswith("file:"))


def stage_wheels(options: dict[str, str]) -> list[Path]:
    """Copy the CPU torch wheel from the host pip's local ``find-links`` folders into deploy/wheels/."""
    staged = sorted(WHEELS.glob(TORCH_WHEEL_GLOB))
    if staged:
        return staged
    for folder in options.get("find-links", "").split():
        path = Path(folder.removeprefix("file://"))
        for wheel in sorted(path.glob(TORCH_WHEEL_GLOB)) if path.is_dir() else []:
            target = WHEELS / wheel.name
            try:
                os.link(wheel, target)
            except OSError:
                shutil.copy2(wheel, target)
            staged.append(target)
    return staged


def compose_env(stage: bool = False) -> dict[str, str]:
    """Build/run variables for docker compose on this machine (only those that differ from defaults)."""
    env: dict[str, str] = {}
    options = pip_config()
    if not image_exists(PUBLIC_BASE) and image_exists(LOCAL_BASE):
        env["LLF_BASE_IMAGE"] = LOCAL_BASE
    if not image_exists(PUBLIC_REDIS) and image_exists(LOCAL_REDIS):
        env["LLF_REDIS_IMAGE"] = LOCAL_REDIS
    cert = options.get("cert")
    if cert and Path(cert).is_file():
        env["LLF_BUILD_CA_BUNDLE"] = cert
    for option, name in (("index-url", "PIP_INDEX_URL"), ("extra-index-url", "PIP_EXTRA_INDEX_URL")):
        urls = _network_urls(options.get(option, ""))
        if urls:
            env[name] = urls
    wheels = stage_wheels(options) if stage else sorted(WHEELS.glob(TORCH_WHEEL_GLOB))
    if wheels:
        env["LLF_TORCH_INDEX_URL"] = ""
    for name in list(env):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage-wheels", action="store_true", help="copy the CPU torch wheel into deploy/wheels/")
    parser.add_argument("--export", action="store_true", help="print shell `export` lines")
    args = parser.parse_args(argv)
    for name, value in compose_env(stage=args.stage_wheels).items():
        print(f"export {name}={shlex.quote(value)}" if args.export else f"{name}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
