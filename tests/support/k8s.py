"""Render deploy/k8s with ``kubectl kustomize`` and check what comes out: schemas and cross-references.

The checks are plain functions over the rendered objects (lists of dicts), so the unit tests feed
them small broken objects and the integration tests the real renderings. Custom kinds are checked
against the CRDs vendored in ``deploy/k8s/crds`` with their OpenAPI schema made strict (an unknown
field is an error, as kubernetes-validate's strict mode makes it for the built-in kinds).
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.37.0"
LLF_IMAGE_PREFIX = "llf/"

# What CI renders: the base, each overlay, and every optional component on top of the overlays.
_COMBINED = {
    "_ci/multinode-components": ("../../overlays/multinode", ["keda", "monitoring"]),
    "_ci/cpu-components": ("../../overlays/cpu", ["keda", "monitoring"]),
}
TARGETS = ("base", "overlays/gpu", "overlays/cpu", "overlays/multinode", *_COMBINED)

Doc = dict[str, Any]


def release_tag() -> str:
    """The project's release tag: the version every service declares (they move together)."""
    versions = {
        tomllib.loads((path / "pyproject.toml").read_text())["project"]["version"]
        for path in sorted((ROOT / "services").iterdir())
        if (path / "pyproject.toml").exists()
    }
    assert len(versions) == 1, f"the services declare different versions: {sorted(versions)}"
    return versions.pop()


def prepare_tree(dest: Path) -> Path:
    """A copy of deploy/k8s as a user would have it: secrets.env created, plus the CI combinations."""
    tree = dest / "k8s"
    shutil.copytree(K8S_DIR, tree)
    shutil.copy(tree / "base" / "secrets.env.example", tree / "base" / "secrets.env")
    for name, (resource, components) in _COMBINED.items():
        (tree / name).mkdir(parents=True)
        (tree / name / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "namespace": "llf",
                    "resources": [resource],
                    "components": [f"../../components/{c}" for c in components],
                }
            )
        )
    return tree


def render(tree: Path, target: str, timeout: float = 120) -> list[Doc]:
    """``kubectl kustomize`` of one target; every object as a dict."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not on PATH: it renders deploy/k8s (`kubectl kustomize`)"
    done = subprocess.run(
        [kubectl, "kustomize", str(tree / target)], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {target} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def name_of(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


# ---------------------------------------------------------------- custom kinds (CRD schemas)
def strict_schema(schema: Any) -> Any:
    """A CRD's OpenAPI v3 schema as JSON Schema that rejects unknown fields.

    The API server prunes unknown fields of a structural schema silently; we want a typo to fail, so
    every object with ``properties`` gets ``additionalProperties: false`` unless the CRD keeps unknown
    fields on purpose (``x-kubernetes-preserve-unknown-fields``). ``x-kubernetes-int-or-string`` is
    spelled out as a JSON Schema type, ``nullable`` as an added ``null``.
    """
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict_schema(value) for key, value in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.setdefault("type", ["integer", "string"])
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def crd_schemas(crd_dir: Path = K8S_DIR / "crds") -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> strict JSON Schema, for every served version of every vendored CRD."""
    schemas: dict[tuple[str, str], Any] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                schema = strict_schema(version["schema"]["openAPIV3Schema"])
                # metadata is checked by the API server (ObjectMeta), not by the CRD's schema.
                schema["properties"]["metadata"] = {"type": "object"}
                schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    return schemas


def custom_kind_errors(doc: Doc, schemas: dict[tuple[str, str], Any]) -> list[str]:
    """Schema violations of one custom object ([] = valid); an unknown kind is one error."""
    import jsonschema

    schema = schemas.get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if schema is None:
        return [f"{name_of(doc)}: no vendored CRD for {doc.get('apiVersion')} {doc.get('kind')}"]
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{name_of(doc)} at {'.'.join(map(str, e.absolute_path)) or '/'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


# ---------------------------------------------------------------- cross-references
def pod_templates(doc: Doc) -> Iterator[tuple[str, Doc]]:
    """(label, pod template) of a workload: Deployment/StatefulSet, or LeaderWorkerSet leader + workers."""
    spec = doc.get("spec") or {}
    if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        yield name_of(doc), spec["template"]
    elif doc["kind"] == "LeaderWorkerSet":
        lwt = spec["leaderWorkerTemplate"]
        if "leaderTemplate" in lwt:
            yield f"{name_of(doc)} leader", lwt["leaderTemplate"]
        yield f"{name_of(doc)} worker", lwt["workerTemplate"]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def router_selector(args: list[str]) -> tuple[dict[str, str], int | None]:
    """vllm-router's ``--selector k=v ...`` (until the next option) and ``--service-discovery-port``."""
    selector: dict[str, str] = {}
    port = None
    for i, arg in enumerate(args):
        if arg == "--selector":
            for value in args[i + 1 :]:
                if value.startswith("--"):
                    break
                key, _, val = value.partition("=")
                selector[key] = val
        elif arg.startswith("--service-discovery-port"):
            port = int(arg.partition("=")[2] or args[i + 1])
    return selector, port


def _containers(pod: Doc) -> list[Doc]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _port_ok(port: Any, container: Doc) -> bool:
    ports = container.get("ports") or []
    if isinstance(port, int):
        return any(p.get("containerPort") == port for p in ports)
    return any(p.get("name") == port for p in ports)


def reference_problems(docs: list[Doc], release: str) -> list[str]:
    """Everything that points at something missing or mismatched; [] when the rendering holds together."""
    problems: list[str] = []
    kinds: dict[str, set[str]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], set()).add(doc["metadata"]["name"])
    secrets = {
        d["metadata"]["name"]: set((d.get("data") or {}) | (d.get("stringData") or {}))
        for d in docs
        if d["kind"] == "Secret"
    }
    templates = [(label, doc, pod) for doc in docs for label, pod in pod_templates(doc)]
    pod_labels = [(pod.get("metadata") or {}).get("labels") or {} for _, _, pod in templates]
    services = [d for d in docs if d["kind"] == "Service"]

    for label, doc, pod in templates:
        spec, labels = pod.get("spec") or {}, (pod.get("metadata") or {}).get("labels") or {}
        selector = ((doc.get("spec") or {}).get("selector") or {}).get("matchLabels")
        if selector is not None and not matches(selector, labels):
            problems.append(f"{label}: selector {selector} does not match its pod labels {labels}")
        sa = spec.get("serviceAccountName")
        if sa and sa not in kinds.get("ServiceAccount", set()):
            problems.append(f"{label}: ServiceAccount {sa} does not exist")
        claim_templates = {t["metadata"]["name"] for t in (doc.get("spec") or {}).get("volumeClaimTemplates") or []}
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if claim not in kinds.get("PersistentVolumeClaim", set()):
                    problems.append(f"{label}: PVC {claim} does not exist")
            if "configMap" in volume and volume["configMap"]["name"] not in kinds.get("ConfigMap", set()):
                problems.append(f"{label}: ConfigMap {volume['configMap']['name']} does not exist")
            if "secret" in volume and volume["secret"]["secretName"] not in secrets:
                problems.append(f"{label}: Secret {volume['secret']['secretName']} does not exist")
        for container in _containers(pod):
            where = f"{label} container {container['name']}"
            for mount in container.get("volumeMounts") or []:
                if mount["name"] not in volumes and mount["name"] not in claim_templates:
                    problems.append(f"{where}: mounts volume {mount['name']}, which the pod does not have")
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["name"] not in secrets:
                    problems.append(f"{where}: env {env['name']} reads Secret {ref['name']}, which does not exist")
                elif ref and ref["key"] not in secrets[ref["name"]] and not ref.get("optional"):
                    problems.append(f"{where}: env {env['name']} reads key {ref['key']} missing from {ref['name']}")
                cm = (env.get("valueFrom") or {}).get("configMapKeyRef")
                if cm and cm["name"] not in kinds.get("ConfigMap", set()):
                    problems.append(f"{where}: env {env['name']} reads ConfigMap {cm['name']}, which does not exist")
            for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(probe_name) or {}
                action = probe.get("httpGet") or probe.get("tcpSocket")
                if action and not _port_ok(action["port"], container):
                    problems.append(f"{where}: {probe_name} port {action['port']!r} is not a port of the container")
            problems += _image_problems(where, container.get("image", ""), release)
            if container.get("args") and "--service-discovery" in container["args"]:
                problems += _router_problems(where, container["args"], templates)

    for service in services:
        selector = service["spec"].get("selector") or {}
        targets = [pod for (_, _, pod), labels in zip(templates, pod_labels, strict=True) if matches(selector, labels)]
        if not targets:
            problems.append(f"{name_of(service)}: selector {selector} matches no pod template")
        for port in service["spec"].get("ports") or []:
            target = port.get("targetPort", port["port"])
            if targets and not any(_port_ok(target, c) for pod in targets for c in _containers(pod)):
                problems.append(f"{name_of(service)}: targetPort {target!r} is not a port of the pods it selects")
    for doc in docs:
        problems += _selector_kind_problems(doc, pod_labels, services, kinds)
    return problems


def _image_problems(where: str, image: str, release: str) -> list[str]:
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    if not tag or tag == "latest":
        return [f"{where}: image {image} is not pinned by tag"]
    if name.startswith(LLF_IMAGE_PREFIX) and tag != release:
        return [f"{where}: image {image} is not the release tag {release}"]
    return []


def _router_problems(where: str, args: list[str], templates: list[tuple[str, Doc, Doc]]) -> list[str]:
    selector, port = router_selector(args)
    found = [
        (label, pod)
        for label, _, pod in templates
        if matches(selector, (pod.get("metadata") or {}).get("labels") or {})
    ]
    if not found:
        return [f"{where}: discovery selector {selector} matches no engine pod"]
    problems = []
    for label, pod in found:
        if port is None or not any(_port_ok(port, c) for c in _containers(pod)):
            problems.append(f"{where}: discovered pods {label} have no container port {port}")
    return problems


def _selector_kind_problems(
    doc: Doc, pod_labels: list[dict[str, str]], services: list[Doc], kinds: dict[str, set[str]]
) -> list[str]:
    kind, spec = doc["kind"], doc.get("spec") or {}
    if kind in {"NetworkPolicy", "PodMonitor"}:
        selector = (spec.get("podSelector") or spec.get("selector") or {}).get("matchLabels") or {}
        if not any(matches(selector, labels) for labels in pod_labels):
            return [f"{name_of(doc)}: selector {selector} matches no pod template"]
    if kind == "ServiceMonitor":
        selector = spec["selector"].get("matchLabels") or {}
        chosen = [s for s in services if matches(selector, (s["metadata"].get("labels") or {}))]
        if not chosen:
            return [f"{name_of(doc)}: selector {selector} matches no Service"]
        ports = {p.get("name") for s in chosen for p in s["spec"]["ports"]}
        secrets = kinds.get("Secret", set())
        for endpoint in spec["endpoints"]:
            credentials = (endpoint.get("authorization") or {}).get("credentials")
            if credentials and credentials["name"] not in secrets:
                return [f"{name_of(doc)}: Secret {credentials['name']} (authorization) does not exist"]
        return [
            f"{name_of(doc)}: Service port {e['port']} missing" for e in spec["endpoints"] if e["port"] not in ports
        ]
    if kind == "ScaledObject":
        target = spec["scaleTargetRef"]
        if target["name"] not in kinds.get(target.get("kind", "Deployment"), set()):
            return [f"{name_of(doc)}: scale target {target['name']} does not exist"]
    if kind == "RoleBinding":
        problems = []
        if doc["roleRef"]["name"] not in kinds.get(doc["roleRef"]["kind"], set()):
            problems.append(f"{name_of(doc)}: {doc['roleRef']['kind']} {doc['roleRef']['name']} does not exist")
        for subject in doc.get("subjects") or []:
            if subject["kind"] == "ServiceAccount" and subject["name"] not in kinds.get("ServiceAccount", set()):
                problems.append(f"{name_of(doc)}: ServiceAccount {subject['name']} does not exist")
        return problems
    return []


def router_can_watch_pods(docs: list[Doc], service_account: str) -> bool:
    """The router's ServiceAccount is bound to a Role that may get, list and watch pods."""
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Role"}
    for binding in (d for d in docs if d["kind"] == "RoleBinding"):
        if not any(s.get("name") == service_account for s in binding.get("subjects") or []):
            continue
        role = roles.get(binding["roleRef"]["name"])
        for rule in (role or {}).get("rules") or []:
            if "pods" in rule.get("resources", []) and {"get", "list", "watch"} <= set(rule.get("verbs", [])):
                return True
    return False
