"""An ``llf`` older than its services still works: replies with keys it does not know are read as usual.

The services only ever add keys (``llf_common.wire``), so every reader of the CLI must ignore the
ones it does not know, and ``--json`` must pass them through unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.unit.cli.conftest import Invoke
from tests.unit.cli.fakes import (
    GATEWAY,
    MODEL,
    REGISTRY,
    Fake,
    gateway_status,
    job_info,
    model_info,
    pull_response,
    sse,
)

JOBS = f"{REGISTRY}/v1/jobs"
MODELS = f"{REGISTRY}/v1/models"


def newer(value: Any) -> Any:
    """``value`` as a newer service would send it: an extra key in every object, at every depth."""
    if isinstance(value, dict):
        return {**{key: newer(item) for key, item in value.items()}, "added_in_a_later_version": {"x": [1]}}
    if isinstance(value, list):
        return [newer(item) for item in value]
    return value


def test_models_ls_and_info_read_a_newer_registrys_models(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", MODELS, httpx.Response(200, json=newer([model_info()])))
    fake.on("GET", f"{MODELS}/{MODEL}", httpx.Response(200, json=newer(model_info())))
    result = llf("models", "ls")
    assert result.exit_code == 0 and MODEL in result.output and "2.5 MB" in result.output, result.output
    info = llf("models", "info", MODEL)
    assert info.exit_code == 0 and "LlamaForCausalLM" in info.output, info.output
    assert json.loads(llf("models", "ls", "--json").output) == newer([model_info()])


def test_jobs_show_and_ls_read_a_newer_registrys_jobs(llf: Invoke, fake: Fake) -> None:
    job = newer(job_info("failed", error="hub said 401"))
    fake.on("GET", f"{JOBS}/job-1", httpx.Response(200, json=job))
    fake.on("GET", JOBS, httpx.Response(200, json=[job]))
    shown = llf("jobs", "show", "job-1")
    assert shown.exit_code == 0 and "hub said 401" in shown.output, shown.output
    assert llf("jobs", "ls").exit_code == 0
    assert json.loads(llf("jobs", "show", "job-1", "--json").output) == job


def test_pull_follows_a_newer_registrys_job_events_to_the_end(llf: Invoke, fake: Fake) -> None:
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(202, json=newer(pull_response())))
    events = [job_info("started", phase="download", done=700_000), job_info("finished")]
    fake.on("GET", f"{JOBS}/job-1/events", sse(newer(events)))
    fake.on("GET", f"{MODELS}/{MODEL}", httpx.Response(200, json=newer(model_info())))
    result = llf("pull", MODEL)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"✓ {MODEL} pulled (0123456, 2.5 MB, verified)\n"


def test_status_and_serve_read_a_newer_gateways_status(llf: Invoke, fake: Fake) -> None:
    status = newer(gateway_status(MODEL))
    fake.on("GET", f"{REGISTRY}/healthz", httpx.Response(200, json={"status": "ok", "build": "x"}))
    fake.on("GET", f"{GATEWAY}/v1/status", httpx.Response(200, json=status))
    fake.on("GET", f"{MODELS}/{MODEL}", httpx.Response(200, json=newer(model_info())))
    fake.on("POST", f"{GATEWAY}/v1/serve", httpx.Response(202, json=status))
    result = llf("status")
    assert result.exit_code == 0 and MODEL in result.output and "r0" in result.output, result.output
    assert json.loads(llf("status", "--json").output) == status
    served = llf("serve", MODEL)
    assert served.exit_code == 0 and f"✓ serving {MODEL}" in served.output, served.output
