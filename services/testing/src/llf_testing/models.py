"""Where a container's model comes from, as plain data: paths, names, environment, image tags.

Three sources, in order of preference: an image that holds the weights (``bake``), a named volume
that a registry filled (verified: a manifest exists only after every file's sha256 matched), or the
generated tiny ``demo`` model. The gateway serves any of them from a directory through its
``model_paths`` setting and loads it at start (``serve_on_start``); no registry runs beside it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

DEMO = "demo"
DEMO_NAME = "llf/demo-tiny"  # the name the demo model is served under (as `make up` imports it)
DEMO_VOLUME = "llf-testing-demo"
DEMO_DIR = "/data/models/llf-testing-demo"
MODELS_VOLUME = "llf-testing-models"
STORE = "/data/models"  # the registry's store inside every llf image (LLF_MODELS_DIR)
BAKED_ROOT = "/opt/llf-models"
MODEL_LABEL = "org.llf.testing.model"
NO_REGISTRY = "http://127.0.0.1:9"  # refused at once: the gateway lists only its model_paths
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_repo(repo: str) -> str:
    if not _REPO.match(repo) or ".." in repo:
        raise ValueError(f"not a model repo id (owner/name): {repo!r}")
    return repo


def manifest_file(repo: str, store: str = STORE) -> str:
    """The registry's manifest of ``repo``: it exists only once every file was verified."""
    return f"{store}/manifests/{check_repo(repo).replace('/', '--')}.json"


def snapshot_path(repo: str, manifest: Mapping[str, Any], store: str = STORE) -> str:
    """The snapshot directory an engine loads, from the verified manifest (error if not verified)."""
    if manifest.get("repo") != repo or not manifest.get("verified_at"):
        raise ValueError(f"{repo} is in the volume but not verified (no finished pull)")
    sha = str(manifest.get("sha", ""))
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
        raise ValueError(f"manifest of {repo} names no commit sha: {sha!r}")
    return f"{store}/models--{repo.replace('/', '--')}/snapshots/{sha}"


def gateway_env(served: str, path: str) -> dict[str, str]:
    """The gateway's settings for one pinned model served at start (LLF_INFERENCE_<KEY>, README)."""
    return {
        "LLF_INFERENCE_MODEL_PATHS": json.dumps({served: path}),
        "LLF_INFERENCE_SERVE_ON_START": served,
        "LLF_MODELS_URL": NO_REGISTRY,
    }


def slug(repo: str) -> str:
    """A Docker tag fragment for a repo id: ``Qwen/Qwen2.5-0.5B`` -> ``qwen--qwen2.5-0.5b``."""
    return re.sub(r"[^a-z0-9_.-]", "-", check_repo(repo).lower().replace("/", "--"))[:100]


def baked_tag(base_image: str, repo: str, sha: str) -> str:
    """``<base repository>-baked:<slug>-<sha12>``: one tag per model revision, beside its base image."""
    repository, _, tag = base_image.rpartition(":")
    if not repository or "/" in tag:
        repository, tag = base_image, "latest"
    return f"{repository}-baked:{tag}-{slug(repo)}-{sha[:12]}"[:300]


def baked_dir(repo: str) -> str:
    return f"{BAKED_ROOT}/{check_repo(repo).replace('/', '--')}"


def commit_changes(repo: str, env: Mapping[str, str]) -> list[str]:
    """Dockerfile lines for ``docker commit``: run as llf, start the gateway, serve the baked model."""
    # The baking container's run labels would be inherited: mark the image as nobody's run.
    lines = ["USER llf", 'CMD ["llf-inference"]', f"LABEL {MODEL_LABEL}={check_repo(repo)} org.llf.testing.managed=0"]
    lines += [f"ENV {key}='{value}'" for key, value in env.items()]
    return lines
