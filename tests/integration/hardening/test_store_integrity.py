"""Races between jobs and ``rm`` that must never leave a wrong or resurrected model in the store.

Real worker processes on the session's Redis and hub stand-in; a slow file keeps one job
running (and holding the repo lock) while another job or an ``rm`` arrives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from tests.integration.hardening.conftest import Tmpfs, pull, start_held_pull, unique
from tests.integration.models.helpers import sha256_of
from tests.support.hub import HubStandIn
from tests.support.net import wait_for
from tests.support.registry import RegistryStack, wait_job

MIB = 1 << 20


def job(stack: RegistryStack, job_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).json())


def downloading(stack: RegistryStack, job_id: str) -> bool:
    info = job(stack, job_id)
    return info["state"] == "started" and info["progress"]["bytes_done"] > 0


def test_a_verify_queued_behind_a_pull_of_a_newer_commit_does_not_write_the_old_manifest_back(
    tmp_path: Path, redis_url: str, fresh_hub: HubStandIn
) -> None:
    repo = unique("verify-race")
    fresh_hub.add_tiny_model(repo, seed=31)
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url)) as stack:
        stack.start_api()
        stack.start_worker()
        stack.start_worker()
        first = pull(stack, repo)
        assert wait_job(stack.url, first["job_id"], timeout=60)["state"] == "finished"
        newer = fresh_hub.add_large_file(repo, "weights.bin", 3 * MIB)
        fresh_hub.slow(repo, "weights.bin", 1 * MIB)  # ~3 s holding the repo lock
        second = pull(stack, repo)
        wait_for(lambda: downloading(stack, second["job_id"]), 30, "the newer pull to download")
        verify = httpx.post(f"{stack.url}/v1/models/{repo}/verify", timeout=30).json()
        wait_for(lambda: job(stack, verify["id"])["state"] == "started", 30, "the verify to wait for the lock")

        assert wait_job(stack.url, second["job_id"], timeout=90)["state"] == "finished"
        ended = wait_job(stack.url, verify["id"], timeout=90)
        assert ended["state"] == "failed" and "changed while this verify waited" in ended["error"], ended
        model = httpx.get(f"{stack.url}/v1/models/{repo}", timeout=10).json()
        assert model["sha"] == newer and model["verified"] is True
        manifest = stack.models_dir / "manifests" / f"{repo.replace('/', '--')}.json"
        assert newer in manifest.read_text()
        ref = stack.models_dir / f"models--{repo.replace('/', '--')}" / "refs" / "main"
        assert ref.read_text() == newer


def test_rm_refuses_while_a_dead_workers_pull_waits_to_be_requeued_and_force_cancels_it(
    tmp_path: Path, redis_url: str, fresh_hub: HubStandIn
) -> None:
    repo = unique("rm-race")
    fresh_hub.add_tiny_model(repo, seed=32)
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url)) as stack:
        stack.start_api()
        worker = stack.start_worker()
        assert wait_job(stack.url, pull(stack, repo)["job_id"], timeout=60)["state"] == "finished"
        fresh_hub.add_large_file(repo, "weights.bin", 4 * MIB)
        fresh_hub.slow(repo, "weights.bin", 1 * MIB)
        running = pull(stack, repo)["job_id"]
        wait_for(lambda: downloading(stack, running), 30, "the pull to download")
        worker.kill()  # its job stays "started" until a live worker's sweep requeues it
        redis = Redis.from_url(redis_url)
        try:  # once its liveness key is gone, its repo lock can be taken over: only the job says "busy"
            alive = f"llf:models:alive:{worker.name}"
            wait_for(lambda: not redis.exists(alive), 30, "the killed worker's liveness key to expire")
        finally:
            redis.close()

        refused = httpx.delete(f"{stack.url}/v1/models/{repo}", timeout=30)
        assert refused.status_code == 409, refused.text
        assert running in refused.json()["detail"]

        stack.start_worker()  # sweeps: the pull is requeued and resumes
        wait_for(lambda: downloading(stack, running), 30, "the requeued pull to download again")
        forced = httpx.delete(f"{stack.url}/v1/models/{repo}", params={"force": "true"}, timeout=30)
        assert forced.status_code == 204, forced.text
        assert job(stack, running)["state"] in ("stopped", "canceled", "failed")

        repo_dir = stack.models_dir / f"models--{repo.replace('/', '--')}"
        fresh_hub.slow(repo, "weights.bin", None)
        for _ in range(3):  # a resurrected pull would finish within these seconds at full speed
            wait_for(lambda: True, 1, "time to pass")
            assert httpx.get(f"{stack.url}/v1/models/{repo}", timeout=10).status_code == 404
            assert not (repo_dir / "snapshots").exists(), "the deleted model came back"


# ---------------------------------------------------------------- disk space of concurrent pulls
@pytest.fixture
def small_disk(tmpfs: Tmpfs) -> Path:
    """An 8 MiB tmpfs as the model store."""
    return tmpfs(8)


def test_two_pulls_that_fit_one_at_a_time_do_not_both_start_filling_the_disk(
    small_disk: Path, tmp_path: Path, redis_url: str, fresh_hub: HubStandIn
) -> None:
    first, second = unique("reserve-a"), unique("reserve-b")
    for repo in (first, second):
        fresh_hub.add_large_file(repo, "weights.bin", 5 * MIB, seed=41)  # 5 MiB each on an 8 MiB disk
    fresh_hub.hold(first, "weights.bin", after_bytes=1 * MIB)
    models_dir = small_disk / "models"
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url),
                       models_dir=models_dir) as stack:  # fmt: skip
        running = start_held_pull(stack, fresh_hub, first, workers=2)

        refused = wait_job(stack.url, pull(stack, second)["job_id"], timeout=60)
        assert refused["state"] == "failed", refused
        assert "reserved by other running pulls" in refused["error"], refused["error"]
        assert fresh_hub.bytes_served(second) == 0, "the second pull started downloading"

        fresh_hub.release(first, "weights.bin")
        done = wait_job(stack.url, running, timeout=60)
        assert done["state"] == "finished", done
        expected = fresh_hub.files(first)["weights.bin"].sha256
        assert sha256_of(models_dir / f"models--{first.replace('/', '--')}" / "blobs" / expected) == expected
        stack.stop()  # nothing may hold the tmpfs when the fixture unmounts it
