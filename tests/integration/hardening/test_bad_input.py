"""The bad-input catalogue: each malformed or hostile request gets its 4xx, and nothing on disk changes.

Both services run for real (registry API + one worker as processes, the gateway in-process
serving the synthetic upstream), with one model already pulled, so "nothing changes" is
checked against a store that has something to lose: after every request the model store (and
the gateway's home) list the same files with the same sizes and mtimes.

Statuses: the registry answers request-validation errors with 422 (FastAPI's, in llf's
``{"detail"}`` shape), unknown things with 404, oversized bodies with 413; the gateway answers
OpenAI-style ``invalid_request_error`` 400s for bad completion requests, 404 for a model it
does not serve, 413 for oversized bodies, 422 for a bad control-plane body.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import TINY_REPO
from tests.integration.hardening.conftest import (
    UPSTREAM_CONTEXT,
    UPSTREAM_MODEL,
    upstream_command,
    upstream_model_dir,
    wait_until_ready,
)
from tests.support.hub import HubStandIn
from tests.support.redis_server import RedisServer
from tests.support.registry import RegistryStack, wait_job

Snapshot = dict[str, tuple[int, int]]


def snapshot(*roots: Path) -> Snapshot:
    """Every file and directory under ``roots`` with its size and mtime (ns)."""
    found: Snapshot = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = Path(dirpath, name)
                stat = path.lstat()
                found[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return found


# ---------------------------------------------------------------- the services, once per module
@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, hub: HubStandIn
) -> Iterator[RegistryStack]:
    """Registry API + worker with ``TINY_REPO`` pulled and verified."""
    if not redis_server.running:
        redis_server.start()
    redis_server.flushall()
    assert hub.url is not None
    stack = RegistryStack(tmp_path_factory.mktemp("bad-input"), redis_url=redis_server.url, hf_endpoint=hub.url)
    try:
        stack.start_api()
        stack.start_worker()
        answer = httpx.post(f"{stack.url}/v1/pulls", json={"repo": TINY_REPO}, timeout=30)
        assert answer.status_code in (200, 202), answer.text
        if answer.json().get("job_id"):
            job = wait_job(stack.url, answer.json()["job_id"], timeout=120)
            assert job["state"] == "finished", job
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, registry: RegistryStack) -> Iterator[tuple[TestClient, Path]]:
    from llf_inference.app import create_app
    from llf_inference.settings import InferenceSettings

    root = tmp_path_factory.mktemp("bad-input-gateway")
    settings = InferenceSettings(
        home=root / "home",
        device="cpu",
        models_url=registry.url,
        engine_command=upstream_command(),
        model_paths={UPSTREAM_MODEL: str(upstream_model_dir(root))},
        serve_on_start=UPSTREAM_MODEL,
        readiness_timeout_s=30,
        stop_timeout_s=3,
        drain_timeout_s=1,
        max_body_bytes=1 << 20,
    )
    with TestClient(create_app(settings)) as client:
        wait_until_ready(lambda: client.get("/readyz").status_code, lambda: client.get("/v1/status").text, 30.0)
        yield client, root


@pytest.fixture
def unchanged_store(registry: RegistryStack) -> Iterator[None]:
    """Fails the test if the model store changed while it ran."""
    before = snapshot(registry.models_dir)
    yield
    after = snapshot(registry.models_dir)
    assert after == before, f"store changed: +{sorted(set(after) - set(before))} -{sorted(set(before) - set(after))}"


def send(base: str, method: str, path: str, body: Any = None, raw: bytes | None = None) -> httpx.Response:
    """One request with a raw path (no client-side normalisation of ``..``)."""
    content = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"content-type": "application/json"} if content is not None else {}
    with httpx.Client(base_url=base, timeout=30) as client:
        request = client.build_request(method, "/", content=content, headers=headers)
        request.url = request.url.copy_with(raw_path=path.encode())
        return client.send(request)


TEN_K = "a" * 10_000

# ---------------------------------------------------------------- registry: bodies
PULL_BODIES: list[tuple[str, Any, int]] = [
    ("path traversal in the owner", {"repo": "../etc"}, 422),
    ("path traversal in the name", {"repo": "owner/../../etc"}, 422),
    ("absolute path as repo id", {"repo": "/etc/passwd"}, 422),
    ("dot-dot as the whole name", {"repo": "owner/.."}, 422),
    ("backslash traversal", {"repo": "owner\\..\\..\\x"}, 422),
    ("url-encoded traversal", {"repo": "..%2F..%2Fetc/passwd"}, 422),
    ("three segments", {"repo": "a/b/c"}, 422),
    ("unicode repo id", {"repo": "ówner/nâme"}, 422),
    ("emoji repo id", {"repo": "owner/🙂"}, 422),
    ("NUL byte in the repo id", {"repo": "owner/na\u0000me"}, 422),
    ("10k-character repo id", {"repo": f"owner/{TEN_K}"}, 422),
    ("10k-character owner", {"repo": f"{TEN_K}/name"}, 422),
    ("empty repo id", {"repo": ""}, 422),
    ("repo id of the wrong type", {"repo": 42}, 422),
    ("missing repo", {}, 422),
    ("unknown key", {"repo": TINY_REPO, "sudo": True}, 422),
    ("revision with traversal", {"repo": TINY_REPO, "revision": "../../main"}, 422),
    ("absolute revision", {"repo": TINY_REPO, "revision": "/main"}, 422),
    ("10k-character revision", {"repo": TINY_REPO, "revision": TEN_K}, 422),
    ("revision that does not exist", {"repo": TINY_REPO, "revision": "no-such-branch"}, 404),
    ("sha that does not exist", {"repo": TINY_REPO, "revision": "0" * 40}, 404),
    ("repo that does not exist", {"repo": "llf-test/no-such-repo-anywhere"}, 404),
    ("traversal in allow_patterns", {"repo": TINY_REPO, "allow_patterns": [""]}, 422),
    ("10k allow patterns", {"repo": TINY_REPO, "allow_patterns": ["*"] * 10_000}, 422),
    ("body is a JSON array", [TINY_REPO], 422),
    ("body is a JSON string", TINY_REPO, 422),
]


@pytest.mark.parametrize(("case", "body", "status"), PULL_BODIES, ids=[c[0] for c in PULL_BODIES])
def test_pull_rejects_bad_bodies_and_touches_nothing(
    case: str, body: Any, status: int, registry: RegistryStack, unchanged_store: None
) -> None:
    answer = send(registry.url, "POST", "/v1/pulls", body)
    assert answer.status_code == status, f"{case}: {answer.status_code} {answer.text[:300]}"
    assert isinstance(answer.json().get("detail"), str) and answer.json()["detail"]


# FastAPI answers a body it cannot decode at all with 400 "error parsing the body", one it
# decodes but cannot validate with 422.
RAW_BODIES: list[tuple[str, bytes, tuple[int, ...]]] = [
    ("malformed JSON", b'{"repo": ', (422,)),
    ("empty body", b"", (422,)),
    ("NaN in the body", b'{"repo": NaN}', (422,)),
    ("non-UTF-8 bytes", b'{"repo": "owner/\xff\xfe\xfd"}', (400, 422)),
    ("deeply nested JSON", b'{"repo": ' + b"[" * 5000 + b"]" * 5000 + b"}", (400, 422)),
    ("body over the size limit", b'{"repo": "' + b"a" * (2 << 20) + b'"}', (413,)),
]


@pytest.mark.parametrize(("case", "raw", "statuses"), RAW_BODIES, ids=[c[0] for c in RAW_BODIES])
def test_pull_rejects_malformed_bytes_and_touches_nothing(
    case: str, raw: bytes, statuses: tuple[int, ...], registry: RegistryStack, unchanged_store: None
) -> None:
    answer = send(registry.url, "POST", "/v1/pulls", raw=raw)
    assert answer.status_code in statuses, f"{case}: {answer.status_code} {answer.text[:300]}"


# ---------------------------------------------------------------- registry: paths
MODEL_PATHS: list[tuple[str, str, str, tuple[int, ...]]] = [
    ("DELETE", "/v1/models/..%2F..%2Fetc", "encoded traversal", (404, 422)),
    ("DELETE", "/v1/models/owner/..", "dot-dot name", (404, 405, 422)),
    ("DELETE", "/v1/models/../../etc", "raw traversal", (404, 422)),
    ("DELETE", "/v1/models/%2Fetc/passwd", "absolute owner", (404, 422)),
    ("DELETE", f"/v1/models/owner/{TEN_K}", "10k-character name", (404, 422)),
    ("DELETE", "/v1/models/%C3%B3wner/n%C3%A2me", "unicode id", (404, 422)),
    ("DELETE", "/v1/models/llf-test/no-such-model", "model not present", (404,)),
    ("GET", "/v1/models/..%2F..%2Fetc", "encoded traversal", (404, 422)),
    ("GET", "/v1/models/owner/%00", "NUL byte", (404, 422)),
    ("POST", "/v1/models/..%2F..%2Fetc/verify", "verify with traversal", (404, 422)),
    ("POST", "/v1/models/llf-test/no-such-model/verify", "verify a model not present", (404,)),
    ("GET", "/v1/jobs/..%2F..%2Fetc", "job id with traversal", (404, 422)),
    ("GET", f"/v1/jobs/{TEN_K}", "10k-character job id", (404, 422)),
    ("DELETE", "/v1/jobs/no-such-job", "cancel a job that does not exist", (404,)),
]


@pytest.mark.parametrize(
    ("method", "path", "case", "statuses"), MODEL_PATHS, ids=[f"{m} {c}" for m, _, c, _ in MODEL_PATHS]
)
def test_model_and_job_routes_reject_bad_ids_and_touch_nothing(
    method: str, path: str, case: str, statuses: tuple[int, ...], registry: RegistryStack, unchanged_store: None
) -> None:
    answer = send(registry.url, method, path)
    assert answer.status_code in statuses, f"{case}: {answer.status_code} {answer.text[:300]}"


def test_the_pulled_model_survives_the_whole_catalogue(registry: RegistryStack) -> None:
    answer = httpx.get(f"{registry.url}/v1/models/{TINY_REPO}", timeout=10)
    assert answer.status_code == 200 and answer.json()["verified"] is True


IMPORT_BODIES: list[tuple[str, Any, tuple[int, ...]]] = [
    ("relative path", {"path": "models/x"}, (400, 422)),
    ("traversal in a relative path", {"path": "../../etc"}, (400, 422)),
    ("path that does not exist", {"path": "/no/such/dir/anywhere"}, (400, 403, 404, 422)),
    ("10k-character path", {"path": "/" + TEN_K}, (400, 403, 404, 422)),
    ("directory outside the import roots", {"path": "/etc"}, (403,)),
    ("name with traversal", {"path": "/tmp", "name": "../etc"}, (422,)),
    ("unicode name", {"path": "/tmp", "name": "ówner/nâme"}, (422,)),
]


@pytest.mark.parametrize(("case", "body", "statuses"), IMPORT_BODIES, ids=[c[0] for c in IMPORT_BODIES])
def test_import_rejects_bad_paths_and_names_and_touches_nothing(
    case: str, body: Any, statuses: tuple[int, ...], registry: RegistryStack, unchanged_store: None
) -> None:
    answer = send(registry.url, "POST", "/v1/imports", body)
    assert answer.status_code in statuses, f"{case}: {answer.status_code} {answer.text[:300]}"


# ---------------------------------------------------------------- gateway
def chat(**fields: Any) -> dict[str, Any]:
    return {"model": UPSTREAM_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **fields}


COMPLETION_BODIES: list[tuple[str, str, Any, int]] = [
    ("max_tokens beyond the context", "/v1/chat/completions", chat(max_tokens=UPSTREAM_CONTEXT + 1), 400),
    ("max_completion_tokens beyond the context", "/v1/chat/completions", chat(max_completion_tokens=10**9), 400),
    ("zero max_tokens", "/v1/chat/completions", chat(max_tokens=0), 400),
    ("negative max_tokens", "/v1/chat/completions", chat(max_tokens=-5), 400),
    ("max_tokens as a string", "/v1/chat/completions", chat(max_tokens="10"), 400),
    ("negative temperature", "/v1/chat/completions", chat(temperature=-0.5), 400),
    ("top_p above one", "/v1/chat/completions", chat(top_p=1.5), 400),
    ("top_p zero", "/v1/chat/completions", chat(top_p=0), 400),
    ("negative top_k below -1", "/v1/chat/completions", chat(top_k=-7), 400),
    ("presence_penalty out of range", "/v1/chat/completions", chat(presence_penalty=-3), 400),
    ("n of zero", "/v1/chat/completions", chat(n=0), 400),
    ("temperature as a string", "/v1/chat/completions", chat(temperature="hot"), 400),
    ("stream as a string", "/v1/chat/completions", chat(stream="yes"), 400),
    ("unknown model", "/v1/chat/completions", chat(model="llf-test/not-served"), 404),
    ("traversal as model", "/v1/chat/completions", chat(model="../../etc/passwd"), 404),
    ("10k-character model", "/v1/chat/completions", chat(model=TEN_K), 404),
    ("empty model", "/v1/chat/completions", chat(model=""), 400),
    ("empty messages", "/v1/chat/completions", chat(messages=[]), 400),
    ("messages not a list", "/v1/chat/completions", chat(messages="hi"), 400),
    ("message without role", "/v1/chat/completions", chat(messages=[{"content": "hi"}]), 400),
    ("message content of the wrong type", "/v1/chat/completions", chat(messages=[{"role": "user", "content": 5}]), 400),
    ("stop of the wrong type", "/v1/chat/completions", chat(stop=[1, 2]), 400),
    ("empty prompt list", "/v1/completions", {"model": UPSTREAM_MODEL, "prompt": []}, 400),
    ("prompt of the wrong type", "/v1/completions", {"model": UPSTREAM_MODEL, "prompt": {"a": 1}}, 400),
    ("completion max_tokens beyond the context", "/v1/completions", {"model": UPSTREAM_MODEL, "prompt": "x",
                                                                     "max_tokens": UPSTREAM_CONTEXT * 10}, 400),
    ("body is a JSON array", "/v1/chat/completions", [chat()], 400),
]


@pytest.mark.parametrize(
    ("case", "path", "body", "status"), COMPLETION_BODIES, ids=[c[0] for c in COMPLETION_BODIES]
)
def test_gateway_rejects_bad_completion_requests_with_openai_errors(
    case: str, path: str, body: Any, status: int, gateway: tuple[TestClient, Path]
) -> None:
    client, root = gateway
    before = snapshot(root)
    answer = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    assert answer.status_code == status, f"{case}: {answer.status_code} {answer.text[:300]}"
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert snapshot(root) == before


GATEWAY_RAW: list[tuple[str, bytes, int]] = [
    ("malformed JSON", b'{"model": ', 400),
    ("empty body", b"", 400),
    ("NaN sampling parameter", b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', 400),
    ("Infinity sampling parameter", b'{"messages": [{"role": "user", "content": "x"}], "top_p": Infinity}', 400),
    ("non-UTF-8 bytes", b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', 400),
    ("deeply nested JSON", b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
    ("body over the size limit", b'{"prompt": "' + b"a" * (2 << 20) + b'"}', 413),
]


@pytest.mark.parametrize(("case", "raw", "status"), GATEWAY_RAW, ids=[c[0] for c in GATEWAY_RAW])
def test_gateway_rejects_malformed_bytes(case: str, raw: bytes, status: int, gateway: tuple[TestClient, Path]) -> None:
    client, root = gateway
    before = snapshot(root)
    answer = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == status, f"{case}: {answer.status_code} {answer.text[:300]}"
    assert answer.json()["error"]["message"]
    assert snapshot(root) == before


SERVE_BODIES: list[tuple[str, Any, int]] = [
    ("traversal as model", {"model": "../../etc"}, 422),
    ("absolute path as model", {"model": "/etc/passwd"}, 422),
    ("unicode model", {"model": "ówner/nâme"}, 422),
    ("10k-character model", {"model": f"owner/{TEN_K}"}, 422),
    ("zero replicas", {"model": UPSTREAM_MODEL, "replicas": 0}, 422),
    ("a thousand replicas", {"model": UPSTREAM_MODEL, "replicas": 1000}, 422),
    ("model the registry does not have", {"model": "llf-test/not-in-registry"}, 404),
]


@pytest.mark.parametrize(("case", "body", "status"), SERVE_BODIES, ids=[c[0] for c in SERVE_BODIES])
def test_serve_rejects_bad_models_and_keeps_serving(
    case: str, body: Any, status: int, gateway: tuple[TestClient, Path]
) -> None:
    client, _ = gateway
    answer = client.post("/v1/serve", json=body)
    assert answer.status_code == status, f"{case}: {answer.status_code} {answer.text[:300]}"
    # /v1/models lists the pool and every verified local model: the refused serve loaded
    # nothing, listed no new name, and left the served model loaded.
    listed = {m["id"]: m["state"] for m in client.get("/v1/models").json()["data"]}
    assert listed == {UPSTREAM_MODEL: "loaded", TINY_REPO: "available"}, f"{case}: {listed}"


def test_the_gateway_still_streams_after_the_catalogue(gateway: tuple[TestClient, Path]) -> None:
    client, _ = gateway
    answer = client.post("/v1/chat/completions", json=chat(stream=True, max_tokens=5))
    assert answer.status_code == 200
    assert answer.text.count("data: ") >= 5 and answer.text.rstrip().endswith("data: [DONE]")
