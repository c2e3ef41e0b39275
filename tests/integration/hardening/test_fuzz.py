"""Schemathesis against both services' OpenAPI specs, in-process, with and without the API key.

What must hold for every generated request: no 5xx, and every answer matches the response
schema the service documents (and its content type). Three auth modes per service: no key
configured; a key configured and sent; a key configured and not sent (then every route but
health must say 401). The number of examples per operation is bounded (``LLF_FUZZ_EXAMPLES``,
default 10) and the generation is derandomized, so CI runs are short and repeatable.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.integration.hardening.conftest import (
    API_KEY,
    UPSTREAM_MODEL,
    unreachable_url,
    upstream_command,
    upstream_model_dir,
    wait_until_ready,
)
from tests.support.hub import HubStandIn
from tests.support.registry import RegistryStack

EXAMPLES = int(os.environ.get("LLF_FUZZ_EXAMPLES", "10"))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
HEALTH_PATHS = {"/healthz", "/readyz"}
MODES = ["no-key", "key-sent", "key-missing"]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)


def as_sent(app: Any) -> Any:
    """The app's own OpenAPI document, bound to the app (every response is validated against it)."""
    raw = copy.deepcopy(app.openapi())
    schema = schemathesis.openapi.from_dict(raw)
    schema.app = app
    schema.location = "/openapi.json"
    return schema


def headers_for(mode: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"} if mode == "key-sent" else {}


def assert_refused_without_key(response: Any) -> None:
    """Without the key: 401, except that FastAPI parses a body before any dependency runs, so a
    body that is not JSON at all gets its 422 first (no data is read or changed either way)."""
    if response.status_code == 401:
        return
    sent = response.request.body
    try:
        json.loads(sent or b"null")
    except (ValueError, UnicodeDecodeError):
        assert response.status_code in (400, 413, 422), f"answered {response.status_code} without the key"
        return
    raise AssertionError(f"answered {response.status_code} without the key (body {sent!r:.200})")


def fuzz(schema: Any, mode: str) -> None:
    """Every operation, positive then negative examples; collects failures instead of stopping at one.

    (``schemathesis.pytest.from_fixture`` needs pytest < 9, so the strategies are driven here
    with Hypothesis directly: the same generation, the same checks.)
    """
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for generation in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @FUZZ
            @given(case=operation.as_strategy(generation_mode=generation))
            def run(case: Any) -> None:
                response = case.call_and_validate(headers=headers_for(mode), checks=CHECKS)
                if mode == "key-missing" and case.path not in HEALTH_PATHS:
                    assert_refused_without_key(response)

            try:
                run()
            except Unsatisfiable:  # nothing to negate (no parameters, or free-form strings only)
                continue
            except (Exception, BaseExceptionGroup) as exc:  # every failing operation is reported
                failures.append(f"{operation.label} ({generation.value}): {str(exc).strip()[:1500]}")
    assert not failures, f"{len(failures)} failing operation(s) [{mode}]:\n" + "\n\n".join(failures)


# ---------------------------------------------------------------- registry
@pytest.mark.parametrize("mode", MODES)
def test_registry_api_answers_generated_requests_without_5xx_and_as_documented(
    mode: str, tmp_path: Path, redis_url: str, fresh_hub: HubStandIn
) -> None:
    from llf_models.app import create_app
    from llf_models.settings import ModelsSettings

    models_settings = ModelsSettings(
        home=tmp_path / "home",
        models_dir=tmp_path / "models",
        redis_url=redis_url,
        hf_endpoint=fresh_hub.url,
        inference_url=unreachable_url(),
        api_key=None if mode == "no-key" else API_KEY,
        disk_margin_bytes=0,
    )
    try:
        fuzz(as_sent(create_app(models_settings)), mode)
    finally:
        shutdown_lifespans()


# ---------------------------------------------------------------- gateway
@pytest.mark.parametrize("mode", MODES)
def test_gateway_api_answers_generated_requests_without_5xx_and_as_documented(
    mode: str, tmp_path: Path, registry_process: RegistryStack
) -> None:
    """The gateway serving the synthetic upstream, asking the real registry about other models."""
    from llf_inference.app import create_app
    from llf_inference.settings import InferenceSettings

    gateway_settings = InferenceSettings(
        home=tmp_path / "home",
        device="cpu",
        models_url=registry_process.url,
        api_key=None if mode == "no-key" else API_KEY,
        engine_command=upstream_command(),
        model_paths={UPSTREAM_MODEL: str(upstream_model_dir(tmp_path))},
        serve_on_start=UPSTREAM_MODEL,
        readiness_timeout_s=30,
        stop_timeout_s=3,
        drain_timeout_s=1,
    )
    try:
        schema = as_sent(create_app(gateway_settings))
        readyz = schema["/readyz"]["GET"]
        wait_until_ready(lambda: readyz.Case(headers=headers_for(mode)).call().status_code, lambda: "")
        # Unserving stops the only engine: every later completion would be "no model served",
        # which is right but says nothing more; that route is covered by the gateway's own tests.
        fuzz(schema.exclude(method="DELETE", path="/v1/serve"), mode)
    finally:
        shutdown_lifespans()
