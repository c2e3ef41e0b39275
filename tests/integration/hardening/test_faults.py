"""Faults the service owners' suites do not already cover, each with what must hold afterwards.

Covered elsewhere (not repeated here): worker SIGKILL mid-file (models), engine SIGKILL
mid-stream (inference), a graceful Redis restart with a queued job (models), the disk
pre-flight 507 (models). Here: the registry API SIGKILLed with requests in flight, Redis
*crashing* (SIGKILL, AOF only) under a running pull with jobs queued behind it, and the disk
filling up *during* a pull (a 5 MiB tmpfs as the model store).
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.hardening.conftest import Tmpfs, pull, start_held_pull, unique
from tests.support.hub import HubStandIn
from tests.support.net import wait_for
from tests.support.redis_server import RedisServer
from tests.support.registry import RegistryStack, wait_job

MIB = 1 << 20


def progress(stack: RegistryStack, job_id: str) -> dict[str, Any]:
    try:
        return dict(httpx.get(f"{stack.url}/v1/jobs/{job_id}", timeout=5).json())
    except httpx.HTTPError:
        return {}


def listed(stack: RegistryStack) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in httpx.get(f"{stack.url}/v1/models", timeout=10).json()}


# ---------------------------------------------------------------- registry API SIGKILL
def test_sigkill_of_the_registry_api_mid_request_loses_no_job_and_hangs_no_client(
    tmp_path: Path, redis_url: str, fresh_hub: HubStandIn
) -> None:
    repo = unique("api-kill")
    fresh_hub.add_tiny_model(repo)
    fresh_hub.add_large_file(repo, "weights.bin", 4 * MIB)
    fresh_hub.hold(repo, "weights.bin", after_bytes=MIB)  # the job is mid-download until released
    repo_bytes = sum(meta.size for meta in fresh_hub.files(repo).values())
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url)) as stack:
        job_id = start_held_pull(stack, fresh_hub, repo)
        old_url = stack.url

        def hammer(i: int) -> str:
            start = time.monotonic()
            try:
                if i % 3 == 0:
                    with httpx.stream("GET", f"{old_url}/v1/jobs/{job_id}/events", timeout=15) as events:
                        for _ in events.iter_lines():
                            pass
                elif i % 3 == 1:
                    httpx.post(f"{old_url}/v1/pulls", json={"repo": repo}, timeout=15)
                else:
                    httpx.get(f"{old_url}/v1/models", timeout=15)
                outcome = "answered"
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            assert time.monotonic() - start < 14, "a client hung on the killed API"
            return outcome

        with ThreadPoolExecutor(max_workers=24) as pool:
            futures = [pool.submit(hammer, i) for i in range(24)]
            time.sleep(0.5)
            assert stack.api is not None
            stack.api.kill()
            outcomes = [f.result(timeout=30) for f in futures]
        assert any(o != "answered" for o in outcomes), "the kill did not land while requests were in flight"

        fresh_hub.release(repo, "weights.bin")
        stack.start_api()  # a new API process (new port) on the same Redis and store
        job = wait_job(stack.url, job_id, timeout=90)
        assert job["state"] == "finished", job
        again = pull(stack, repo)
        assert again["state"] == "present"
        assert listed(stack)[repo]["verified"] is True
        assert fresh_hub.bytes_served(repo) == repo_bytes, "the kill caused a second download"
        jobs = httpx.get(f"{stack.url}/v1/jobs", timeout=10).json()
        assert [j["id"] for j in jobs if j["repo"] == repo] == [job_id], "duplicate or lost jobs"


# ---------------------------------------------------------------- Redis crash
def crash_redis_under_a_pull(
    stack: RegistryStack, redis_server: RedisServer, hub: HubStandIn
) -> tuple[list[str], list[str]]:
    """Start a slow pull, queue two more behind it, SIGKILL Redis for a second; (repos, job ids)."""
    repos = [unique(f"redis-kill-{i}") for i in range(3)]
    for index, repo in enumerate(repos):
        hub.add_tiny_model(repo, seed=20 + index)
    hub.add_large_file(repos[0], "weights.bin", 4 * MIB)
    hub.hold(repos[0], "weights.bin", after_bytes=MIB)  # running through the whole outage
    first = start_held_pull(stack, hub, repos[0])
    jobs = [first, *(pull(stack, repo)["job_id"] for repo in repos[1:])]
    assert all(progress(stack, j)["state"] == "queued" for j in jobs[1:])
    redis_server.kill()  # a crash: only what the AOF already holds survives
    time.sleep(1.0)  # the outage being simulated lasts one second
    redis_server.start()
    hub.release(repos[0], "weights.bin")
    return repos, jobs


def test_redis_sigkill_under_a_running_pull_with_jobs_queued_loses_no_job(
    tmp_path: Path, redis_server: RedisServer, redis_url: str, fresh_hub: HubStandIn
) -> None:
    """What must hold: every accepted job finishes once Redis is back and the workers run again.

    The supervisor (supervisord's autorestart in local mode, Compose's restart policy) brings back
    a worker that exited during the outage; this test plays that part, and the new worker must
    requeue the job the dead one held.
    """
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url)) as stack:
        repos, jobs = crash_redis_under_a_pull(stack, redis_server, fresh_hub)
        time.sleep(2.0)
        if not any(worker.alive for worker in stack.workers):
            stack.start_worker()  # what the supervisor does
        for job_id in jobs:
            job = wait_job(stack.url, job_id, timeout=120)
            assert job["state"] == "finished", job
        models = wait_for(lambda: listed(stack), 15, "models listed")
        assert set(repos) <= set(models)
        assert all(models[repo]["verified"] for repo in repos)


def test_the_worker_rides_out_a_one_second_redis_crash(
    tmp_path: Path, redis_server: RedisServer, redis_url: str, fresh_hub: HubStandIn
) -> None:
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url)) as stack:
        _, jobs = crash_redis_under_a_pull(stack, redis_server, fresh_hub)
        time.sleep(3.0)
        assert all(worker.alive for worker in stack.workers), stack.workers[0].log_tail(5)
        for job_id in jobs:
            assert wait_job(stack.url, job_id, timeout=120)["state"] == "finished"


# ---------------------------------------------------------------- disk full mid-pull
@pytest.fixture
def small_disk(tmpfs: Tmpfs) -> Path:
    """A 5 MiB tmpfs to use as the model store."""
    return tmpfs(5)


def fill(directory: Path) -> Path:
    """Take every free byte of the file system under ``directory``."""
    filler = directory / "filler.bin"
    with contextlib.suppress(OSError), filler.open("wb") as handle:
        while True:
            handle.write(b"\0" * (256 << 10))
            handle.flush()
    return filler


def test_disk_full_during_a_pull_fails_it_clearly_and_lists_nothing_half_written(
    small_disk: Path, tmp_path: Path, redis_url: str, fresh_hub: HubStandIn
) -> None:
    repo = unique("disk-full")
    fresh_hub.add_tiny_model(repo)
    fresh_hub.add_large_file(repo, "weights.bin", 3 * MIB)  # fits when the pull starts
    fresh_hub.hold(repo, "weights.bin", after_bytes=MIB, times=1)  # the disk fills mid-file
    models_dir = small_disk / "models"
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url),
                       models_dir=models_dir) as stack:  # fmt: skip
        job_id = start_held_pull(stack, fresh_hub, repo)
        filler = fill(small_disk)  # someone else fills the disk while we download
        fresh_hub.release(repo, "weights.bin")

        job = wait_job(stack.url, job_id, timeout=120)
        assert job["state"] == "failed", job
        error = (job.get("error") or "").lower()
        assert "space" in error or "disk" in error, f"unclear error: {job.get('error')}"
        assert repo not in listed(stack), "a half-written model is listed"
        assert httpx.get(f"{stack.url}/v1/models/{repo}", timeout=10).status_code == 404
        snapshots = list(models_dir.glob("models--*/snapshots/*/weights.bin"))
        assert snapshots == [], f"a half file is in a snapshot: {snapshots}"

        filler.unlink()  # space is back: the same pull now completes (resuming or anew)
        retry = pull(stack, repo)
        finished = wait_job(stack.url, retry["job_id"], timeout=120) if retry.get("job_id") else retry
        assert finished["state"] in ("finished", "present"), finished
        assert listed(stack)[repo]["verified"] is True
        stack.stop()  # nothing may hold the tmpfs when the fixture unmounts it
