"""Failures of single containers: a worker killed mid-pull, Redis restarted, the gateway killed.

The file name sorts after test_stack.py on purpose: these run last, once the happy path is proven.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import pytest

from tests.e2e.conftest import TINY, Stack, hub_sha256, job, model, pull, wait_job, wait_serving

pytestmark = pytest.mark.timeout(1800)


def restart_count(stack: Stack, container: str) -> int:
    return int(stack.inspect(container)["RestartCount"])


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True, timeout=120)


def crash(stack: Stack, *containers: str) -> None:
    """SIGKILL each container's main process from the host: to Docker a crash, so the restart policy applies.

    ``docker kill`` would not do: Docker counts it as a manual stop and then ignores the restart policy.
    """
    for container in containers:
        os.kill(int(stack.inspect(container)["State"]["Pid"]), signal.SIGKILL)


def wait_restarted(stack: Stack, before: dict[str, int], timeout: float = 120) -> None:
    """Until Docker has restarted every container in ``before`` (container -> restart count then)."""
    deadline = time.monotonic() + timeout
    while not all(restart_count(stack, c) > n for c, n in before.items()):
        assert time.monotonic() < deadline, f"the restart policy did not restart {sorted(before)}"
        time.sleep(0.5)


def test_a_pull_completes_with_correct_sha256_after_its_worker_is_killed(
    stack: Stack, registry: httpx.Client, hub_api: httpx.Client
) -> None:
    repo = "e2e/slow"  # a tiny model plus a 48 MB file served at 3 MB/s
    job_id = pull(registry, repo)
    deadline = time.monotonic() + 120
    info = job(registry, job_id)
    while not (info["state"] == "started" and info["progress"]["bytes_done"] > 8_000_000):
        assert time.monotonic() < deadline, f"the pull never got going: {info}"
        assert info["state"] in ("queued", "started"), info
        time.sleep(0.2)
        info = job(registry, job_id)
    workers = stack.container_ids("worker")
    before = {c: restart_count(stack, c) for c in workers}
    crash(stack, *workers)  # both: whichever ran the pull, it dies mid-download

    wait_restarted(stack, before)
    stack.wait_healthy("worker")
    done = wait_job(registry, job_id, timeout=300)
    assert done["state"] == "finished", done
    info = model(registry, repo)
    assert info["verified"] is True
    expected = hub_sha256(hub_api, repo)
    for path, sha in expected.items():
        on_disk = stack.compose("exec", "-T", "models", "sha256sum", f"{info['path']}/{path}").stdout.split()[0]
        assert on_disk == sha, path


def test_models_and_queued_jobs_survive_a_redis_restart(stack: Stack, registry: httpx.Client, served: str) -> None:
    stack.compose("stop", "worker")
    try:
        job_id = pull(registry, "e2e/late")
        assert job(registry, job_id)["state"] == "queued"
        before = sorted(m["name"] for m in registry.get("/v1/models").json())
        assert served in before

        docker("restart", *stack.container_ids("redis"))
        stack.wait_healthy("redis")
        deadline = time.monotonic() + 60
        while True:  # the registry reconnects on its own
            try:
                after = sorted(m["name"] for m in registry.get("/v1/models").json())
                break
            except (httpx.HTTPError, ValueError):
                assert time.monotonic() < deadline, "the registry did not reconnect to Redis"
                time.sleep(1)
        assert after == before
        assert job(registry, job_id)["state"] == "queued"
    finally:
        stack.compose("start", "worker")
    stack.wait_healthy("worker")
    assert wait_job(registry, job_id, timeout=180)["state"] == "finished"
    assert model(registry, "e2e/late")["verified"] is True


def test_a_killed_inference_container_comes_back_and_serves(stack: Stack, served: str) -> None:
    (container,) = stack.container_ids("inference")
    before = restart_count(stack, container)
    crash(stack, container)

    wait_restarted(stack, {container: before})
    stack.wait_healthy("inference", timeout=300)
    # A restarted container may get another ephemeral host port: ask Compose again.
    with httpx.Client(base_url=stack.url("inference", 8000), timeout=60) as gateway:
        wait_serving(gateway, served, timeout=600)  # LLF_INFERENCE_SERVE_ON_START: the gateway serves its model again
        reply = gateway.post(
            "/v1/chat/completions",
            json={"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
            timeout=120,
        )
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] is not None
