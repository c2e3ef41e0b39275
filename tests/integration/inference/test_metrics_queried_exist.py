"""Every metric the Grafana dashboard and the KEDA trigger query exists in a live scrape.

The queries live in deploy/k8s/components (the dashboard JSON and the ScaledObject). Their metric
names are checked against real scrapes: the gateway's /metrics, a real vLLM engine's /metrics (through
the gateway's pass-through), the registry's /metrics and vllm-router's Prometheus port, with the
router running on loopback in front of that engine and one request sent through it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import yaml

from tests.integration.inference.conftest import API_KEY, ensure_served
from tests.support.engine import VllmEngine
from tests.support.gateway import GatewayProcess
from tests.support.k8s import K8S_DIR
from tests.support.registry import RegistryStack
from tests.support.router import running_router

AUTH = {"Authorization": f"Bearer {API_KEY}"}
_NAME = re.compile(r"(?<![\w:])((?:vllm:|vllm_router_|llf_)[A-Za-z0-9_:]+)")


def queried_metrics() -> set[str]:
    dashboard = json.loads((K8S_DIR / "components" / "monitoring" / "llf-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for path in (K8S_DIR / "components" / "keda").glob("scaledobject-*.yaml"):
        exprs += [t["metadata"]["query"] for t in yaml.safe_load(path.read_text())["spec"]["triggers"]]
    return {name for expr in exprs for name in _NAME.findall(expr)}


def names(exposition: str) -> set[str]:
    """Sample names of a Prometheus text exposition (``_bucket``/``_total`` included, as queried)."""
    return {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line and not line.startswith("#")}


def chat(base_url: str, model: str, headers: dict[str, str] = AUTH) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    response = httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text


def router_scrape(engine_port: int, model: str, workdir: Path) -> str:
    """vllm-router on loopback in front of a vLLM engine: one request through it, then its metrics.

    The engine is the session's bare one (no key): a gateway's engine answers only the per-start
    key the gateway keeps to itself, which a test has no business reading out of the engine.
    """
    with running_router([f"http://127.0.0.1:{engine_port}"], "round_robin", log=workdir / "router.log") as router:
        chat(router.url, model, {})
        return httpx.get(router.metrics_url, timeout=10).text


def test_every_metric_the_dashboard_and_keda_query_is_scraped_live(
    gateway: GatewayProcess, inference_registry: RegistryStack, engine: VllmEngine, tmp_path: Path
) -> None:
    model = ensure_served(gateway)
    chat(gateway.url, model)
    replica = next(r for r in gateway.status()["replicas"] if r["model"] == model and r["state"] == "ready")
    scraped = {
        "gateway": names(httpx.get(f"{gateway.url}/metrics", headers=AUTH, timeout=10).text),
        "engine": names(httpx.get(f"{gateway.url}/metrics/engine/{replica['id']}", headers=AUTH, timeout=10).text),
        "registry": names(httpx.get(f"{inference_registry.url}/metrics", headers=AUTH, timeout=10).text),
        "router": names(router_scrape(engine.port or 0, "tiny", tmp_path)),
    }
    queried = queried_metrics()
    assert {"vllm:num_requests_waiting", "llf_models_jobs", "vllm_router_processed_requests_total"} <= queried
    every = set().union(*scraped.values())
    missing = sorted(queried - every)
    assert not missing, f"queried but not scraped: {missing}\nscraped: { {k: sorted(v) for k, v in scraped.items()} }"
