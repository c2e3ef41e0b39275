"""The API documents are part of the API: with ``LLF_API_KEY`` set they need the key too.

``/docs``, ``/redoc`` and ``/openapi.json`` describe every route and were open on both services
although only health is promised to be; without a key they stay open (a local set-up).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.integration.hardening.conftest import API_KEY, unreachable_url

DOCS = ["/docs", "/redoc", "/openapi.json"]


def client_for(service: str, tmp_path: Path, api_key: str | None) -> TestClient:
    if service == "registry":
        from llf_models.app import build_registry, create_app
        from llf_models.settings import ModelsSettings

        settings = ModelsSettings(home=tmp_path, models_dir=tmp_path / "models", redis_url="redis://127.0.0.1:1/0",
                                  inference_url=unreachable_url(), api_key=api_key)  # fmt: skip
        return TestClient(create_app(settings, build_registry(settings)))
    from llf_inference.app import create_app as create_gateway
    from llf_inference.settings import InferenceSettings

    return TestClient(create_gateway(InferenceSettings(home=tmp_path, device="cpu", api_key=api_key,
                                                       models_url=unreachable_url())))  # fmt: skip


@pytest.mark.parametrize("service", ["registry", "gateway"])
def test_the_api_documents_need_the_key_when_one_is_set(service: str, tmp_path: Path) -> None:
    client = client_for(service, tmp_path, API_KEY)
    for path in DOCS:
        assert client.get(path).status_code == 401, f"{service} {path} answers without the key"
        wrong = client.get(path, headers={"Authorization": "Bearer not-the-key"})
        assert wrong.status_code == 401, f"{service} {path} answers a wrong key"
        right = client.get(path, headers={"Authorization": f"Bearer {API_KEY}"})
        assert right.status_code == 200, f"{service} {path} with the key: {right.status_code}"
    schema = client.get("/openapi.json", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert "/healthz" in schema["paths"]
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("service", ["registry", "gateway"])
def test_the_api_documents_stay_open_without_a_key(service: str, tmp_path: Path) -> None:
    client = client_for(service, tmp_path, None)
    for path in DOCS:
        assert client.get(path).status_code == 200, f"{service} {path}"
