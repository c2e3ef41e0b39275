"""The registry around pulls: verify, delete, import, Redis restarts, auth, pre-flight, locks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from redis import Redis

from tests.integration.conftest import TINY_REPO
from tests.integration.models.helpers import sha256_of
from tests.support.hub import HubStandIn
from tests.support.net import wait_for
from tests.support.redis_server import RedisServer
from tests.support.registry import RegistryStack, import_tiny_model, wait_job

pytestmark = pytest.mark.timeout(180)
MIB = 1 << 20


def pull(stack: RegistryStack, repo: str, **body: object) -> dict[str, object]:
    response = httpx.post(f"{stack.url}/v1/pulls", json={"repo": repo, **body}, headers=stack.headers, timeout=30)
    assert response.status_code == 202, response.text
    return wait_job(stack.url, response.json()["job_id"], timeout=90, api_key=stack.api_key)


class GatewayStatusHandler(BaseHTTPRequestHandler):
    served: list[str] = []

    def do_GET(self) -> None:
        body = json.dumps({"state": "ready", "models": self.served, "replicas": []}).encode()
        self.send_response(200 if self.path == "/v1/status" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[tuple[str, type[GatewayStatusHandler]]]:
    """A minimal gateway answering GET /v1/status (what the registry asks before deleting)."""
    handler = type("Handler", (GatewayStatusHandler,), {"served": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_verify_reports_a_byte_corrupted_on_disk_after_the_pull(stack: RegistryStack, fresh_hub: HubStandIn) -> None:
    stack.start_worker()
    assert pull(stack, TINY_REPO)["state"] == "finished"
    ok = httpx.post(f"{stack.url}/v1/models/{TINY_REPO}/verify", timeout=10)
    assert ok.status_code == 202
    assert wait_job(stack.url, ok.json()["id"], timeout=30)["state"] == "finished"

    model = httpx.get(f"{stack.url}/v1/models/{TINY_REPO}", timeout=10).json()
    weights = Path(model["path"]) / "model.safetensors"
    expected = sha256_of(weights)
    with weights.open("r+b") as handle:  # through the snapshot symlink: the blob itself
        handle.seek(5000)
        byte = handle.read(1)
        handle.seek(5000)
        handle.write(bytes([byte[0] ^ 0x01]))
    actual = sha256_of(weights)

    job = httpx.post(f"{stack.url}/v1/models/{TINY_REPO}/verify", timeout=10).json()
    job = wait_job(stack.url, job["id"], timeout=30)
    assert job["state"] == "failed"
    assert "model.safetensors" in job["error"] and expected in job["error"] and actual in job["error"]
    assert job["result"]["problems"][0]["path"] == "model.safetensors"
    after = httpx.get(f"{stack.url}/v1/models/{TINY_REPO}", timeout=10).json()
    assert after["verified"] is False

    # Pulling again repairs it: only the corrupted file is fetched again.
    fresh_hub.reset_counters()
    repaired = httpx.post(f"{stack.url}/v1/pulls", json={"repo": TINY_REPO}, timeout=30)
    assert repaired.status_code == 202
    assert wait_job(stack.url, repaired.json()["job_id"], timeout=60)["state"] == "finished"
    assert fresh_hub.gets(TINY_REPO, "model.safetensors") == 1
    assert fresh_hub.gets(TINY_REPO, "config.json") == 0
    assert sha256_of(weights) == expected


def test_missing_file_is_reported_by_verify(stack: RegistryStack) -> None:
    stack.start_worker()
    pull(stack, TINY_REPO)
    model = httpx.get(f"{stack.url}/v1/models/{TINY_REPO}", timeout=10).json()
    (Path(model["path"]) / "tokenizer.json").unlink()
    job = httpx.post(f"{stack.url}/v1/models/{TINY_REPO}/verify", timeout=10).json()
    job = wait_job(stack.url, job["id"], timeout=30)
    assert job["state"] == "failed" and "tokenizer.json: missing" in job["error"]


def test_models_and_a_queued_job_survive_a_redis_restart(
    tmp_path: Path, redis_server: RedisServer, redis_url: str, fresh_hub: HubStandIn, unique_repo: str
) -> None:
    fresh_hub.add_tiny_model(unique_repo, seed=5)
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url)) as stack:
        stack.start_api()
        worker = stack.start_worker()
        pull(stack, TINY_REPO)
        worker.stop()  # no worker while Redis restarts: the next job must wait in the queue
        queued = httpx.post(f"{stack.url}/v1/pulls", json={"repo": unique_repo}, timeout=30).json()
        assert queued["state"] == "queued"

        redis_server.restart()

        listed = wait_for(lambda: answers_ok(f"{stack.url}/v1/models"), 15, "the registry to answer after the restart")
        assert [m["name"] for m in listed.json()] == [TINY_REPO]
        job = httpx.get(f"{stack.url}/v1/jobs/{queued['job_id']}", timeout=10).json()
        assert job["state"] == "queued" and job["position"] == 0
        stack.start_worker()
        assert wait_job(stack.url, queued["job_id"], timeout=60)["state"] == "finished"


def test_models_are_listed_from_disk_when_redis_lost_everything(stack: RegistryStack, redis_url: str) -> None:
    stack.start_worker()
    pull(stack, TINY_REPO)
    Redis.from_url(redis_url).flushall()
    listed = httpx.get(f"{stack.url}/v1/models", timeout=10).json()
    assert [m["name"] for m in listed] == [TINY_REPO]


def state(stack: RegistryStack, job_id: str) -> str:
    return str(httpx.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).json()["state"])


def answers_ok(url: str) -> httpx.Response | None:
    """The 200 answer of ``GET url``, or ``None`` while the service cannot give one."""
    try:
        response = httpx.get(url, timeout=10)
    except httpx.HTTPError:
        return None
    return response if response.status_code == 200 else None


def test_delete_is_refused_while_the_gateway_serves_the_model_and_allowed_otherwise(
    tmp_path: Path, redis_url: str, fresh_hub: HubStandIn, gateway: tuple[str, type[GatewayStatusHandler]]
) -> None:
    url, handler = gateway
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url), inference_url=url) as stack:
        stack.start_api()
        stack.start_worker()
        pull(stack, TINY_REPO)
        handler.served = [TINY_REPO]
        assert httpx.get(f"{stack.url}/v1/models/{TINY_REPO}", timeout=10).json()["served"] is True
        refused = httpx.delete(f"{stack.url}/v1/models/{TINY_REPO}", timeout=10)
        assert refused.status_code == 409 and "served" in refused.json()["detail"]
        handler.served = []
        assert httpx.delete(f"{stack.url}/v1/models/{TINY_REPO}", timeout=10).status_code == 204
        assert httpx.get(f"{stack.url}/v1/models/{TINY_REPO}", timeout=10).status_code == 404
        assert not (stack.models_dir / "models--llf-test--tiny-llama").exists()
        assert httpx.delete(f"{stack.url}/v1/models/{TINY_REPO}", timeout=10).status_code == 404


def test_delete_is_allowed_when_the_gateway_is_unreachable(stack: RegistryStack) -> None:
    stack.start_worker()
    pull(stack, TINY_REPO)
    assert httpx.delete(f"{stack.url}/v1/models/{TINY_REPO}", timeout=10).status_code == 204


def test_import_of_a_local_directory_is_listed_hashed_and_loadable_from_the_cache_layout(
    stack: RegistryStack, tiny_model_dir: Path
) -> None:
    stack.start_worker()
    model = import_tiny_model(stack.url, tiny_model_dir, "local/tiny")
    assert model["source"] == "import" and model["verified"] is True
    assert model["architecture"] == "LlamaForCausalLM" and model["params"] > 0
    for entry in model["files"]:
        assert entry["sha256"] == sha256_of(tiny_model_dir / entry["path"])
    assert sha256_of(Path(model["path"]) / "model.safetensors") == sha256_of(tiny_model_dir / "model.safetensors")
    from huggingface_hub import snapshot_download

    assert Path(snapshot_download("local/tiny", cache_dir=stack.models_dir, local_files_only=True)) == Path(
        model["path"]
    )
    missing = httpx.post(f"{stack.url}/v1/imports", json={"path": str(tiny_model_dir / "nope")}, timeout=10)
    assert missing.status_code == 404


def test_every_route_but_health_requires_the_api_key(tmp_path: Path, redis_url: str, fresh_hub: HubStandIn) -> None:
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url), api_key="s3cret") as stack:
        stack.start_api()
        for method, path in (
            ("GET", "/v1/models"),
            ("GET", "/v1/jobs"),
            ("POST", "/v1/pulls"),
            ("DELETE", f"/v1/models/{TINY_REPO}"),
        ):
            response = httpx.request(method, f"{stack.url}{path}", json={"repo": TINY_REPO}, timeout=10)
            assert response.status_code == 401, (method, path)
            assert "API key" in response.json()["detail"]
        assert httpx.get(f"{stack.url}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{stack.url}/readyz", timeout=10).status_code == 200
        assert httpx.get(f"{stack.url}/v1/models", headers=stack.headers, timeout=10).status_code == 200


def test_pull_is_refused_with_507_when_the_disk_is_too_small(
    tmp_path: Path, redis_url: str, fresh_hub: HubStandIn
) -> None:
    env = {"LLF_MODELS_DISK_MARGIN_BYTES": str(1 << 60)}
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url), env=env) as stack:
        stack.start_api()
        response = httpx.post(f"{stack.url}/v1/pulls", json={"repo": TINY_REPO}, timeout=10)
        assert response.status_code == 507
        assert "not enough disk space" in response.json()["detail"]


def test_unknown_repo_revision_and_gated_repo_are_clear_errors(
    stack: RegistryStack, fresh_hub: HubStandIn, unique_repo: str
) -> None:
    with stack.client() as client:
        missing = client.post("/v1/pulls", json={"repo": "llf-test/does-not-exist"})
        assert missing.status_code == 404 and "not found" in missing.json()["detail"]
        revision = client.post("/v1/pulls", json={"repo": TINY_REPO, "revision": "no-such-branch"})
        assert revision.status_code == 404 and "no-such-branch" in revision.json()["detail"]
        # Like the real hub, a gated repo's metadata is public; its files are not.
        fresh_hub.add_tiny_model(unique_repo, seed=6, gated=True)
        stack.start_worker()
        gated = client.post("/v1/pulls", json={"repo": unique_repo})
        assert gated.status_code == 202
        job = wait_job(stack.url, gated.json()["job_id"], timeout=30)
        assert job["state"] == "failed" and "gated" in job["error"] and "HF_TOKEN" in job["error"]
        assert fresh_hub.requests("resolve_head") == 1, "no retry for an access error"
        assert client.get("/v1/jobs/no-such-job").status_code == 404
        assert client.delete("/v1/jobs/no-such-job").status_code == 404
        assert client.get("/v1/models/llf-test/nothing-here").status_code == 404


def test_hf_token_is_used_for_gated_repos_and_never_shows_up(
    tmp_path: Path, redis_url: str, fresh_hub: HubStandIn, unique_repo: str
) -> None:
    token = "hf_llf_secret_token_42"
    fresh_hub.require_token(token)
    fresh_hub.add_tiny_model(unique_repo, seed=7, gated=True)
    env = {"HF_TOKEN": token}
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url), env=env) as stack:
        stack.start_api()
        stack.start_worker()
        job = pull(stack, unique_repo)
        assert job["state"] == "finished"
        fresh_hub.corrupt(unique_repo, "config.json")
        fresh_hub.add_repo(unique_repo, {"config.json": b"{}"}, keep_existing=True)
        failed = pull(stack, unique_repo)
        assert failed["state"] == "failed"
        jobs_text = httpx.get(f"{stack.url}/v1/jobs", timeout=10).text
        logs = "".join(p.read_text(errors="replace") for p in stack.logs.glob("*.log"))
        keys = Redis.from_url(redis_url).keys("*")
        dump = b"".join(
            str(Redis.from_url(redis_url).hgetall(k)).encode()
            for k in keys
            if Redis.from_url(redis_url).type(k) == b"hash"
        )
    assert token not in jobs_text and token not in logs and token.encode() not in dump


def test_two_revisions_of_one_repo_never_download_the_same_file_twice(
    stack: RegistryStack, fresh_hub: HubStandIn, unique_repo: str
) -> None:
    first = fresh_hub.add_large_file(unique_repo, "big.bin", 6 * MIB, seed=11)
    fresh_hub.add_repo(unique_repo, {"README.md": b"second commit\n"}, keep_existing=True)
    # The first download of big.bin stays in flight until both jobs run: the second one meets it.
    fresh_hub.hold(unique_repo, "big.bin", after_bytes=MIB, times=1)
    a = httpx.post(f"{stack.url}/v1/pulls", json={"repo": unique_repo, "revision": first}, timeout=30).json()
    b = httpx.post(f"{stack.url}/v1/pulls", json={"repo": unique_repo}, timeout=30).json()
    assert a["job_id"] != b["job_id"]
    stack.start_worker()
    stack.start_worker()
    fresh_hub.wait_until_held(unique_repo, "big.bin", timeout=30)
    wait_for(lambda: all(state(stack, j["job_id"]) == "started" for j in (a, b)), 30, "both jobs running")
    fresh_hub.release(unique_repo, "big.bin")
    assert wait_job(stack.url, a["job_id"], timeout=60)["state"] == "finished"
    assert wait_job(stack.url, b["job_id"], timeout=60)["state"] == "finished"
    assert fresh_hub.gets(unique_repo, "big.bin") == 1  # the second job found the blob complete
    assert fresh_hub.bytes_served(unique_repo, "big.bin") == 6 * MIB
