"""The OpenAPI documents describe the error bodies and content types the services really send.

Both were found by the fuzz suite (FastAPI's default documents differ from what the shared error
handlers and the Prometheus route send) and are fixed; these keep them fixed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.integration.hardening.conftest import unreachable_url


def registry_app(tmp_path: Path) -> TestClient:
    from llf_models.app import build_registry, create_app
    from llf_models.settings import ModelsSettings

    settings = ModelsSettings(home=tmp_path, models_dir=tmp_path / "models", redis_url="redis://127.0.0.1:1/0",
                              inference_url=unreachable_url())  # fmt: skip
    # No lifespan: the documents and a validation error need no Redis.
    return TestClient(create_app(settings, build_registry(settings)))


def gateway_app(tmp_path: Path) -> TestClient:
    from llf_inference.app import create_app
    from llf_inference.settings import InferenceSettings

    return TestClient(create_app(InferenceSettings(home=tmp_path, device="cpu", models_url=unreachable_url())))


@pytest.mark.parametrize("service", ["registry", "gateway"])
def test_validation_errors_are_documented_as_sent(service: str, tmp_path: Path) -> None:
    client = registry_app(tmp_path) if service == "registry" else gateway_app(tmp_path)
    path = "/v1/pulls" if service == "registry" else "/v1/serve"
    answer = client.post(path, json={"repo": "not a repo", "model": "not a model"})
    assert answer.status_code == 422
    documented = client.get("/openapi.json").json()["components"]["schemas"]["HTTPValidationError"]
    detail_type = documented["properties"]["detail"].get("type")
    sent_type = {str: "string", list: "array", dict: "object"}[type(answer.json()["detail"])]
    assert detail_type == sent_type


def test_gateway_metrics_are_documented_as_prometheus_text(tmp_path: Path) -> None:
    client = gateway_app(tmp_path)
    with client:
        answer = client.get("/metrics")
    documented = client.get("/openapi.json").json()["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert answer.headers["content-type"].split(";")[0] in documented
