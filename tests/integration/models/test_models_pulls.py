"""Pulls against the hub stand-in, with real Redis and real worker processes."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from huggingface_hub import snapshot_download

from tests.integration.conftest import TINY_REPO
from tests.integration.models.helpers import files_under, sha256_of
from tests.support.hub import HubStandIn
from tests.support.net import wait_for
from tests.support.registry import RegistryStack, wait_job

pytestmark = pytest.mark.timeout(180)

MIB = 1 << 20
HUB_CHUNK = 64 * 1024  # the stand-in never sends more than this per write
# Bytes the hub counts as sent but the worker never read when SIGKILL hit: loopback socket
# buffers, plus what the stand-in writes before it notices the disconnect. Measured 0-320 KiB.
IN_FLIGHT = 1 * MIB


def blob_dir(stack: RegistryStack, repo: str) -> Path:
    return stack.models_dir / ("models--" + repo.replace("/", "--")) / "blobs"


def group_gone(pgid: int) -> bool:
    """No process is left in the group (a worker and its work horse share one)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_pull_of_tiny_model_is_ready_with_the_hubs_digests_in_a_valid_hf_cache(
    stack: RegistryStack, fresh_hub: HubStandIn
) -> None:
    stack.start_worker()
    with stack.client() as client:
        response = client.post("/v1/pulls", json={"repo": TINY_REPO})
        assert response.status_code == 202, response.text
        pull = response.json()
        assert pull["sha"] == fresh_hub.resolve(TINY_REPO)
        job = wait_job(stack.url, pull["job_id"], timeout=60)
        assert job["state"] == "finished", job
        assert job["progress"]["phase"] == "done"
        assert job["progress"]["bytes_done"] == job["progress"]["bytes_total"] > 0

        model = client.get(f"/v1/models/{TINY_REPO}").json()
        assert model["verified"] is True
        assert model["architecture"] == "LlamaForCausalLM" and model["architecture_supported"] is True
        assert model["params"] > 0 and model["dtype"] == "float32"
        assert model["weight_bytes"] == model["params"] * 4
        hub_files = fresh_hub.files(TINY_REPO)
        assert {f["path"]: f["sha256"] for f in model["files"]} == {p: m.sha256 for p, m in hub_files.items()}
        assert [m["name"] for m in client.get("/v1/models").json()] == [TINY_REPO]

        again = client.post("/v1/pulls", json={"repo": TINY_REPO})
        assert again.status_code == 200 and again.json()["state"] == "present"

    snapshot = snapshot_download(TINY_REPO, cache_dir=stack.models_dir, local_files_only=True)
    assert Path(snapshot) == Path(model["path"])
    for path, meta in hub_files.items():
        assert sha256_of(Path(snapshot) / path) == meta.sha256
    manifest = json.loads((stack.models_dir / "manifests" / "llf-test--tiny-llama.json").read_text())
    assert manifest["sha"] == pull["sha"] and manifest["verified_at"]


def test_hundred_concurrent_identical_pulls_cause_exactly_one_download(
    stack: RegistryStack, fresh_hub: HubStandIn, unique_repo: str
) -> None:
    fresh_hub.add_tiny_model(unique_repo, seed=3)

    def post(_: int) -> httpx.Response:
        return httpx.post(f"{stack.url}/v1/pulls", json={"repo": unique_repo}, timeout=60)

    with ThreadPoolExecutor(max_workers=100) as pool:
        responses = list(pool.map(post, range(100)))
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["job_id"] for r in responses}) == 1
    jobs = httpx.get(f"{stack.url}/v1/jobs", timeout=10).json()
    assert [j["id"] for j in jobs] == [responses[0].json()["job_id"]]
    assert jobs[0]["state"] == "queued" and jobs[0]["position"] == 0

    stack.start_worker()
    stack.start_worker()
    assert wait_job(stack.url, responses[0].json()["job_id"], timeout=60)["state"] == "finished"
    for path in fresh_hub.files(unique_repo):
        assert fresh_hub.gets(unique_repo, path) == 1, path


def test_pull_resumes_from_the_partial_file_after_the_worker_is_sigkilled(
    stack: RegistryStack, fresh_hub: HubStandIn, unique_repo: str
) -> None:
    size = 20 * MIB
    fresh_hub.add_large_file(unique_repo, "big.bin", size, seed=7)
    expected = fresh_hub.files(unique_repo)["big.bin"].sha256
    # The first GET stops at half the file and stays parked: the kill lands mid-file, always; the
    # resumed GET is not held.
    fresh_hub.hold(unique_repo, "big.bin", after_bytes=size // 2, times=1)
    partial = blob_dir(stack, unique_repo) / f"{expected}.incomplete"

    first = stack.start_worker()
    job_id = httpx.post(f"{stack.url}/v1/pulls", json={"repo": unique_repo}, timeout=30).json()["job_id"]
    fresh_hub.wait_until_held(unique_repo, "big.bin", timeout=30)
    wait_for(lambda: partial.exists() and partial.stat().st_size >= size // 2, 30, "half of big.bin on disk")
    first.kill()
    wait_for(lambda: group_gone(first.process.pid), 10, "the killed worker's work horse to be gone too")
    at_kill = partial.stat().st_size
    assert at_kill == size // 2

    started = time.monotonic()
    stack.start_worker()
    job = wait_job(stack.url, job_id, timeout=60)
    assert job["state"] == "finished", job
    recovery = time.monotonic() - started

    served = fresh_hub.bytes_served(unique_repo, "big.bin")
    ranges = fresh_hub.ranges(unique_repo, "big.bin")
    # Exactly one resumed GET, starting where the partial file ended: no byte on disk is fetched again.
    assert ranges == [f"bytes={at_kill}-"], ranges
    assert served <= size + IN_FLIGHT, (served, size)
    assert sha256_of(blob_dir(stack, unique_repo) / expected) == expected
    assert not partial.exists()
    print(f"resume: killed at {at_kill}/{size} B; hub served {served - size} B over size; done {recovery:.1f} s later")


def test_corrupt_byte_on_the_hub_fails_the_pull_naming_the_file_and_both_digests(
    stack: RegistryStack, fresh_hub: HubStandIn, unique_repo: str
) -> None:
    fresh_hub.add_tiny_model(unique_repo, seed=4)
    fresh_hub.corrupt(unique_repo, "model.safetensors", at_byte=4096)
    good = fresh_hub.file_bytes(unique_repo, "model.safetensors")
    bad = bytearray(good)
    bad[4096] ^= 0xFF
    import hashlib

    stack.start_worker()
    job_id = httpx.post(f"{stack.url}/v1/pulls", json={"repo": unique_repo}, timeout=30).json()["job_id"]
    job = wait_job(stack.url, job_id, timeout=60)
    assert job["state"] == "failed"
    assert "model.safetensors" in job["error"]
    assert hashlib.sha256(good).hexdigest() in job["error"]
    assert hashlib.sha256(bad).hexdigest() in job["error"]
    assert fresh_hub.gets(unique_repo, "model.safetensors") == 1, "a corrupt file is not worth a retry"
    assert httpx.get(f"{stack.url}/v1/models/{unique_repo}", timeout=10).status_code == 404
    assert unique_repo not in [m["name"] for m in httpx.get(f"{stack.url}/v1/models", timeout=10).json()]


def test_cancel_of_a_running_pull_stops_it_within_two_seconds_and_keeps_the_partial(
    stack: RegistryStack, fresh_hub: HubStandIn, unique_repo: str
) -> None:
    size = 16 * MIB
    fresh_hub.add_large_file(unique_repo, "big.bin", size, seed=8)
    digest = fresh_hub.files(unique_repo)["big.bin"].sha256
    fresh_hub.hold(unique_repo, "big.bin", after_bytes=2 * MIB)  # under way until canceled
    partial = blob_dir(stack, unique_repo) / f"{digest}.incomplete"
    stack.start_worker()
    job_id = httpx.post(f"{stack.url}/v1/pulls", json={"repo": unique_repo}, timeout=30).json()["job_id"]
    fresh_hub.wait_until_held(unique_repo, "big.bin", timeout=30)
    wait_for(lambda: partial.exists() and partial.stat().st_size >= 2 * MIB, 30, "2 MiB of big.bin on disk")

    started = time.monotonic()
    response = httpx.delete(f"{stack.url}/v1/jobs/{job_id}", timeout=10)
    assert response.status_code == 200
    wait_for(lambda: httpx.get(f"{stack.url}/v1/jobs/{job_id}").json()["state"] == "stopped", 2.0, "stopped")
    stopped_after = time.monotonic() - started
    size_then = partial.stat().st_size
    fresh_hub.release(unique_repo, "big.bin")  # a download that survived the cancel would write on now
    time.sleep(0.6)
    assert partial.stat().st_size == size_then, "still downloading after cancel"
    assert stopped_after < 2.0
    print(f"cancel: stopped {stopped_after:.2f} s after DELETE, partial kept at {size_then} bytes")

    # The partial stays for a later pull, which resumes from it; purge removes it. The resumed
    # download is held again after 1 MiB, so it is still running when the purge comes (released,
    # it could finish first and leave nothing to purge).
    fresh_hub.hold(unique_repo, "big.bin", after_bytes=MIB)
    again = httpx.post(f"{stack.url}/v1/pulls", json={"repo": unique_repo}, timeout=30).json()
    assert again["job_id"] == job_id and again["state"] in ("queued", "started")
    fresh_hub.wait_until_held(unique_repo, "big.bin", timeout=30)
    wait_for(lambda: partial.exists() and partial.stat().st_size > size_then, 30, "resumed download")
    purged = httpx.delete(f"{stack.url}/v1/jobs/{job_id}", params={"purge": "true"}, timeout=10).json()
    assert purged["state"] == "stopped" and not purged["warnings"]
    assert not partial.exists()
    assert fresh_hub.ranges(unique_repo, "big.bin")[0].startswith("bytes=")
    fresh_hub.release(unique_repo, "big.bin")


def test_events_stream_reports_progress_until_the_job_ends(
    stack: RegistryStack, fresh_hub: HubStandIn, unique_repo: str
) -> None:
    fresh_hub.add_large_file(unique_repo, "big.bin", 4 * MIB, seed=9)
    fresh_hub.slow(unique_repo, "big.bin", 4 * MIB)  # ~1 s: several progress updates
    job_id = httpx.post(f"{stack.url}/v1/pulls", json={"repo": unique_repo}, timeout=30).json()["job_id"]
    stack.start_worker()
    events: list[dict[str, object]] = []
    with httpx.stream("GET", f"{stack.url}/v1/jobs/{job_id}/events", timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    assert events[-1]["state"] == "finished"
    done = [e["progress"]["bytes_done"] for e in events]  # type: ignore[index]
    assert done == sorted(done) and len({d for d in done if d}) >= 3
    assert any(e["progress"]["phase"] == "download" and e["progress"]["rate_bps"] > 0 for e in events)  # type: ignore[index]


def test_malformed_and_traversing_repo_ids_are_rejected_with_422_and_write_nothing(
    stack: RegistryStack, fresh_hub: HubStandIn
) -> None:
    before = files_under(stack.models_dir)
    bad_bodies = [
        {"repo": "../../etc/passwd"},
        {"repo": "a/../../b"},
        {"repo": "/abs/path"},
        {"repo": "owner/name/extra"},
        {"repo": "noslash"},
        {"repo": ""},
        {"repo": "sp ace/name"},
        {"repo": "o" * 97 + "/name"},
        {"repo": "owner/..name"},
        {"repo": TINY_REPO, "revision": "../../refs"},
        {"repo": TINY_REPO, "revision": "/etc"},
        {"repo": TINY_REPO, "extra": 1},
    ]
    with stack.client() as client:
        for body in bad_bodies:
            response = client.post("/v1/pulls", json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.json()["detail"]
        assert (
            client.post("/v1/pulls", content=b"{not json", headers={"content-type": "application/json"}).status_code
            == 422
        )
        for path in ("/v1/models/a..b/c", "/v1/models/owner/name/extra", "/v1/models/x", "/v1/models/%2E%2E/etc"):
            assert client.get(path).status_code == 422, path
            assert client.delete(path).status_code == 422, path
        assert client.post("/v1/models/..%2F../verify").status_code in (404, 422)
        imported = client.post("/v1/imports", json={"path": str(stack.workdir), "name": "../evil"})
        assert imported.status_code == 422
        assert client.post("/v1/imports", json={"path": "relative/dir"}).status_code == 422
        assert client.get("/v1/jobs/..%2F..%2Fetc").status_code == 404
    assert files_under(stack.models_dir) == before
    assert fresh_hub.requests("model_info") == 0
    assert not os.path.exists(stack.models_dir.parent / "etc")
