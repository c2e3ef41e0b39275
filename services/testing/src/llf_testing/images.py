"""Which image a container runs: the project's inference image for this host, tagged with this version.

``make images`` (scripts/docker-images.sh) builds ``llf/inference-cpu`` and ``llf/inference-gpu``;
a team that pushes them to its own registry sets ``LLF_IMAGE_PREFIX=registry.example/llf`` and, for
another tag than this package's version, ``LLF_TAG``. A local build tagged only ``latest`` (the
Compose default) is used when the version tag is absent, so a checkout works without retagging.
"""

from __future__ import annotations

import shutil
from collections.abc import Container, Mapping
from typing import Any, Literal

from llf_testing.version import __version__

Variant = Literal["cpu", "gpu"]
DEFAULT_PREFIX = "llf"


def image_name(component: str, env: Mapping[str, str], version: str = __version__) -> str:
    """``<prefix>/<component>:<tag>`` from ``LLF_IMAGE_PREFIX`` / ``LLF_TAG`` (else llf / the version).

    ``component``: ``inference-cpu``, ``inference-gpu`` or ``models``.
    """
    prefix = (env.get("LLF_IMAGE_PREFIX") or DEFAULT_PREFIX).rstrip("/")
    tag = env.get("LLF_TAG") or version
    return f"{prefix}/{component}:{tag}"


def choose_image(component: str, env: Mapping[str, str], local: Container[str], version: str = __version__) -> str:
    """The image to run: the versioned name, or its ``latest`` twin when only that one is built here.

    ``local`` holds the tags present in the Docker engine. A name absent locally is returned as is
    (Docker pulls it from the team's registry).
    """
    name = image_name(component, env, version)
    if name in local or env.get("LLF_TAG"):
        return name
    latest = name.rsplit(":", 1)[0] + ":latest"
    return latest if latest in local else name


def host_has_nvidia(docker_info: Mapping[str, Any], nvidia_smi: str | None = None) -> bool:
    """A GPU is usable by containers: ``nvidia-smi`` on this host **and** Docker knows the nvidia runtime.

    The same test as ``make up`` (README, "make up: one command, three situations").
    """
    if nvidia_smi is None:
        nvidia_smi = shutil.which("nvidia-smi")
    runtimes = docker_info.get("Runtimes") or {}
    return bool(nvidia_smi) and "nvidia" in runtimes


def variant_for(docker_info: Mapping[str, Any], nvidia_smi: str | None = None) -> Variant:
    return "gpu" if host_has_nvidia(docker_info, nvidia_smi) else "cpu"


def local_tags(client: Any) -> set[str]:
    """Every ``repository:tag`` in the engine behind ``client`` (a ``docker.DockerClient``)."""
    return {tag for image in client.images.list() for tag in image.tags}
