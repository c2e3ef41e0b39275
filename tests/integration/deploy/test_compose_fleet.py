"""The Compose ``fleet`` profile (deploy/compose.fleet.yml) is the Kubernetes topology: same engine
command, same router policy. Rendered with ``docker compose config`` (no Docker engine needed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from tests.support import k8s

FILES = ["docker-compose.yml", "deploy/compose.cpu.yml", "deploy/compose.fleet.yml"]


@pytest.fixture(scope="module")
def fleet_config() -> dict[str, Any]:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode:
        pytest.skip("no `docker compose` here (CI installs it with scripts/ci-docker.sh)")
    args = [docker, "compose", *[f"-f{f}" for f in FILES], "--profile", "fleet", "config", "--format", "json"]
    done = subprocess.run(args, cwd=k8s.ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def test_the_fleet_has_a_router_two_engines_and_the_registry(fleet_config: dict[str, Any]) -> None:
    services = fleet_config["services"]
    assert {"router", "engine-1", "engine-2", "fleet-pull", "models", "worker", "redis"} <= set(services)
    router = services["router"]
    assert router["build"]["dockerfile"] == "deploy/router.Dockerfile"
    assert {"http://engine-1:8000", "http://engine-2:8000"} <= set(router["command"])
    for name in ("engine-1", "engine-2"):
        volumes = {v["target"]: v for v in services[name]["volumes"]}
        assert volumes["/data/models"]["read_only"] is True
        assert services[name]["depends_on"]["fleet-pull"]["condition"] == "service_completed_successfully"


def test_engines_and_router_run_as_in_kubernetes(
    fleet_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    docs = k8s.render(k8s.prepare_tree(tmp_path_factory.mktemp("k8s")), "overlays/cpu")
    engine = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("engine-"))
    router = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("router-"))
    k8s_engine = engine["spec"]["template"]["spec"]["containers"][0]["args"][0]
    compose_engine = fleet_config["services"]["engine-1"]["command"][0].replace("$$", "$")
    assert compose_engine == k8s_engine
    k8s_policy = {
        a for a in router["spec"]["template"]["spec"]["containers"][0]["args"] if a.startswith(("--policy", "--cb-"))
    }
    assert k8s_policy <= set(fleet_config["services"]["router"]["command"])
