"""Every rendering of deploy/k8s is valid Kubernetes and holds together.

Built-in kinds: kubernetes-validate, strict (unknown fields fail), against a current Kubernetes.
Custom kinds (LeaderWorkerSet, ScaledObject, PodMonitor, ServiceMonitor): the CRDs in deploy/k8s/crds.
Cross-references: selectors, the router's discovery selector, PVCs/ConfigMaps/Secrets/ServiceAccounts,
probe ports, image tags (tests/support/k8s.py).
"""

from __future__ import annotations

import pytest

from tests.support import k8s

CUSTOM_KINDS = {"LeaderWorkerSet", "ScaledObject", "PodMonitor", "ServiceMonitor"}


@pytest.mark.parametrize("target", k8s.TARGETS)
def test_builtin_kinds_validate_strictly_against_kubernetes(renderings: dict[str, list[k8s.Doc]], target: str) -> None:
    import kubernetes_validate

    errors = []
    for doc in renderings[target]:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, k8s.KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{k8s.name_of(doc)}: {exc.message} at {'.'.join(map(str, exc.path))}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("target", k8s.TARGETS)
def test_custom_kinds_validate_against_vendored_crds(renderings: dict[str, list[k8s.Doc]], target: str) -> None:
    schemas = k8s.crd_schemas()
    errors = [
        e for doc in renderings[target] if doc["kind"] in CUSTOM_KINDS for e in k8s.custom_kind_errors(doc, schemas)
    ]
    assert not errors, "\n".join(errors)


def test_every_custom_kind_is_rendered_somewhere(renderings: dict[str, list[k8s.Doc]]) -> None:
    kinds = {doc["kind"] for docs in renderings.values() for doc in docs}
    assert kinds >= CUSTOM_KINDS


@pytest.mark.parametrize("target", k8s.TARGETS)
def test_references_between_objects_resolve(renderings: dict[str, list[k8s.Doc]], target: str) -> None:
    problems = k8s.reference_problems(renderings[target], k8s.release_tag())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("target", k8s.TARGETS)
def test_each_router_discovers_engines_and_may_watch_them(renderings: dict[str, list[k8s.Doc]], target: str) -> None:
    docs = renderings[target]
    routers = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("router-")]
    engines = [
        d
        for d in docs
        if d["kind"] in {"Deployment", "LeaderWorkerSet"} and d["metadata"]["name"].startswith("engine-")
    ]
    assert routers and len(routers) == len(engines), "one router per model"
    for router in routers:
        pod = router["spec"]["template"]["spec"]
        selector, port = k8s.router_selector(pod["containers"][0]["args"])
        assert port == 8000
        served = [
            label
            for e in engines
            for label, t in k8s.pod_templates(e)
            if k8s.matches(selector, t["metadata"]["labels"])
        ]
        assert len(served) == 1 and not served[0].endswith("worker"), f"{router['metadata']['name']} discovers {served}"
        assert k8s.router_can_watch_pods(docs, pod["serviceAccountName"])


@pytest.mark.parametrize("target", k8s.TARGETS)
def test_every_container_is_locked_down(renderings: dict[str, list[k8s.Doc]], target: str) -> None:
    """Non-root, no privilege escalation, read-only root, requests and limits, a probe on every server."""
    problems = []
    for doc in renderings[target]:
        for label, pod in k8s.pod_templates(doc):
            spec = pod["spec"]
            if not spec.get("securityContext", {}).get("runAsNonRoot"):
                problems.append(f"{label}: runAsNonRoot is not set")
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                sc, where = container.get("securityContext", {}), f"{label} {container['name']}"
                if sc.get("allowPrivilegeEscalation") is not False or not sc.get("readOnlyRootFilesystem"):
                    problems.append(f"{where}: privilege escalation or a writable root filesystem")
                if not {"requests", "limits"} <= set(container.get("resources", {})):
                    problems.append(f"{where}: no resource requests and limits")
                if container in spec["containers"] and "livenessProbe" not in container:
                    problems.append(f"{where}: no liveness probe")
    assert not problems, "\n".join(problems)


def test_engines_mount_the_model_store_read_only_and_the_registry_writes_it(
    renderings: dict[str, list[k8s.Doc]],
) -> None:
    docs = renderings["overlays/multinode"]
    store = [d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "models"]
    assert store and store[0]["spec"]["accessModes"] == ["ReadWriteMany"]
    for doc in docs:
        for label, pod in k8s.pod_templates(doc):
            for volume in pod["spec"].get("volumes", []):
                if volume.get("persistentVolumeClaim", {}).get("claimName") != "models":
                    continue
                writable = label.startswith(("Deployment/models", "Deployment/worker"))
                assert volume["persistentVolumeClaim"].get("readOnly", False) is not writable, label


def test_gpu_overlays_request_gpus_and_cpu_overlay_none(renderings: dict[str, list[k8s.Doc]]) -> None:
    def gpus(target: str) -> dict[str, str]:
        return {
            label: c["resources"]["limits"].get("nvidia.com/gpu", "0")
            for doc in renderings[target]
            for label, pod in k8s.pod_templates(doc)
            if doc["metadata"]["name"].startswith("engine-")
            for c in pod["spec"]["containers"]
        }

    assert set(gpus("overlays/gpu").values()) == {"1"}
    assert set(gpus("overlays/cpu").values()) == {"0"}
    assert set(gpus("overlays/multinode").values()) == {"1", "8"}


@pytest.mark.parametrize("target", k8s.TARGETS)
def test_redis_and_every_client_of_it_use_the_secrets_password(
    renderings: dict[str, list[k8s.Doc]], target: str
) -> None:
    """Redis requires REDIS_PASSWORD of the Secret; its clients read it from a mounted file, not a URL."""
    docs = renderings[target]
    [secret] = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].startswith("llf-secrets")]
    assert "REDIS_PASSWORD" in secret["data"]
    pods = {k8s.name_of(d): d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")}
    [redis] = [spec for name, spec in pods.items() if name.endswith("/redis")]
    script = " ".join(redis["containers"][0]["command"])
    assert "requirepass" in script and "/etc/llf-redis/password" in script
    clients = [c for spec in pods.values() for c in spec["containers"]
               if any(e["name"] == "REDIS_URL" for e in c.get("env", []))]  # fmt: skip
    assert clients, "no container connects to Redis"
    for container in [redis["containers"][0], *clients]:
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert "@" not in (env.get("REDIS_URL") or ""), container["name"]
        assert any(m["mountPath"] == "/etc/llf-redis" for m in container["volumeMounts"]), container["name"]
        if container is not redis["containers"][0]:
            assert env["LLF_REDIS_PASSWORD_FILE"] == "/etc/llf-redis/password", container["name"]
    for spec in [redis, *(s for s in pods.values() if any(c in clients for c in s["containers"]))]:
        [volume] = [v for v in spec["volumes"] if v["name"] == "redis-password"]
        assert volume["secret"]["items"] == [{"key": "REDIS_PASSWORD", "path": "password"}]
