"""deploy/k8s rendered once per session with ``kubectl kustomize``: every overlay and the components."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support import k8s


@pytest.fixture(scope="session")
def renderings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[k8s.Doc]]:
    """target (``overlays/gpu``, ...) -> its rendered objects, from a copy of the tree with secrets.env."""
    tree = k8s.prepare_tree(tmp_path_factory.mktemp("deploy"))
    return {target: k8s.render(tree, target) for target in k8s.TARGETS}


@pytest.fixture(scope="session")
def rendered_dir(renderings: dict[str, list[k8s.Doc]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The renderings as one YAML file per target (what checkov scans)."""
    out = tmp_path_factory.mktemp("rendered")
    for target, docs in renderings.items():
        (out / (target.replace("/", "_") + ".yaml")).write_text(yaml.safe_dump_all(docs))
    return out
