"""The deploy/k8s checkers (tests/support/k8s.py) catch what they claim to, on small hand-made objects."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.support import k8s


def engine(**labels: str) -> dict[str, Any]:
    labels = labels or {"app.kubernetes.io/name": "llf-engine", "llf.dev/model": "m"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "engine-m"},
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {
                            "name": "engine",
                            "image": "llf/inference-gpu:1.2.3",
                            "ports": [{"name": "http", "containerPort": 8000}],
                            "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}},
                            "env": [
                                {
                                    "name": "K",
                                    "valueFrom": {"secretKeyRef": {"name": "llf-secrets", "key": "LLF_API_KEY"}},
                                }
                            ],
                            "volumeMounts": [{"name": "models", "mountPath": "/data/models"}],
                        }
                    ],
                    "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}],
                },
            },
        },
    }


def router(selector: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "router-m"},
        "spec": {
            "selector": {"matchLabels": {"app": "router"}},
            "template": {
                "metadata": {"labels": {"app": "router"}},
                "spec": {
                    "serviceAccountName": "router",
                    "containers": [
                        {
                            "name": "router",
                            "image": "llf/router:1.2.3",
                            "args": ["--service-discovery", "--selector", *selector, "--service-discovery-port=8000"],
                        }
                    ],
                },
            },
        },
    }


def world(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "llf-secrets"}, "data": {"LLF_API_KEY": "eA=="}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models"}, "spec": {}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "router"}},
        engine(),
        router(["app.kubernetes.io/name=llf-engine", "llf.dev/model=m"]),
        *extra,
    ]


def test_a_consistent_set_of_objects_has_no_problems() -> None:
    assert k8s.reference_problems(world(), "1.2.3") == []


def test_a_router_selector_that_matches_no_engine_is_reported() -> None:
    docs = world()
    docs[-1] = router(["app.kubernetes.io/name=llf-engine", "llf.dev/model=other"])
    assert any("discovery selector" in p for p in k8s.reference_problems(docs, "1.2.3"))


def test_missing_secret_pvc_and_service_account_are_reported() -> None:
    docs = [d for d in world() if d["kind"] not in {"Secret", "PersistentVolumeClaim", "ServiceAccount"}]
    problems = "\n".join(k8s.reference_problems(docs, "1.2.3"))
    assert "Secret llf-secrets" in problems
    assert "PVC models" in problems
    assert "ServiceAccount router" in problems


def test_a_probe_on_an_undeclared_port_is_reported() -> None:
    docs = world()
    docs[3]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = "metrics"
    assert any("readinessProbe port 'metrics'" in p for p in k8s.reference_problems(docs, "1.2.3"))


def test_image_tags_must_be_the_release_and_never_latest() -> None:
    assert any("release tag 9.9.9" in p for p in k8s.reference_problems(world(), "9.9.9"))
    docs = world()
    docs[3]["spec"]["template"]["spec"]["containers"][0]["image"] = "redis:latest"
    assert any("not pinned" in p for p in k8s.reference_problems(docs, "1.2.3"))


def test_a_service_selector_and_target_port_must_match_a_pod() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"selector": {"llf.dev/model": "m"}, "ports": [{"port": 80, "targetPort": "nope"}]},
    }
    assert any("targetPort 'nope'" in p for p in k8s.reference_problems(world(service), "1.2.3"))
    service["spec"]["selector"] = {"llf.dev/model": "x"}
    assert any("matches no pod template" in p for p in k8s.reference_problems(world(service), "1.2.3"))


def test_router_selector_parses_values_until_the_next_option() -> None:
    args = ["--selector", "a=1", "b=2", "--service-discovery-port", "8000", "--policy=x"]
    assert k8s.router_selector(args) == ({"a": "1", "b": "2"}, 8000)


def test_strict_crd_schema_rejects_unknown_fields_but_keeps_preserved_ones() -> None:
    crd_schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "spec": {"type": "object", "properties": {"size": {"x-kubernetes-int-or-string": True}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {}},
        },
    }
    schema = k8s.strict_schema(copy.deepcopy(crd_schema))
    schema["properties"]["metadata"] = {"type": "object"}
    schemas = {("x.io/v1", "Thing"): schema}
    good = {
        "apiVersion": "x.io/v1",
        "kind": "Thing",
        "metadata": {"name": "t"},
        "spec": {"size": "10%"},
        "free": {"a": 1},
    }
    assert k8s.custom_kind_errors(good, schemas) == []
    bad = copy.deepcopy(good)
    bad["spec"]["sise"] = 1
    assert any("sise" in e for e in k8s.custom_kind_errors(bad, schemas))
    assert k8s.custom_kind_errors({**good, "kind": "Other"}, schemas) == ["Other/t: no vendored CRD for x.io/v1 Other"]


def test_vendored_crds_cover_every_custom_kind_used() -> None:
    kinds = {kind for _, kind in k8s.crd_schemas()}
    assert kinds >= {"LeaderWorkerSet", "ScaledObject", "PodMonitor", "ServiceMonitor"}


def test_release_tag_is_the_services_version() -> None:
    assert k8s.release_tag().count(".") == 2


def test_the_config_file_of_the_configmap_is_valid_for_the_registry_and_the_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from llf_cli.settings import get_settings
    from llf_models.settings import ModelsSettings

    monkeypatch.setenv("LLF_CONFIG", str(k8s.K8S_DIR / "base" / "config.json"))
    monkeypatch.setenv("LLF_HOME", str(tmp_path))
    assert ModelsSettings.load().workers == 2
    assert get_settings().default_model == "Qwen/Qwen2.5-0.5B-Instruct"
