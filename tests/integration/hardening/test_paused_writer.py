"""A worker paused past its liveness TTL (``docker pause``, SIGSTOP, a stalled VM) is presumed dead.

Its pull is requeued and another worker takes the download over; when the paused one wakes up
it must not write a byte that ends up in the store. The hub ignores ``Range`` (some mirrors do),
so the new writer starts the file over at byte 0 while the old one is far along: with a shared
partial file, the old writer finishing first renamed a file with a hole in as verified.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.integration.models.helpers import sha256_of
from tests.support.hub import HubStandIn
from tests.support.registry import ManagedProcess, RegistryStack, wait_job

MIB = 1 << 20
SIZE = 8 * MIB
PAUSED_AT = 6 * MIB


def job(stack: RegistryStack, job_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).json())


def processes_of(worker: ManagedProcess) -> list[psutil.Process]:
    """The worker and its work horse (the horse first: it is the one writing)."""
    main = psutil.Process(worker.pid)
    return [*main.children(recursive=True), main]


@contextlib.contextmanager
def paused(worker: ManagedProcess) -> Iterator[list[psutil.Process]]:
    """SIGSTOP the worker and its horse; SIGCONT whatever is left of them on the way out."""
    group = processes_of(worker)
    assert len(group) == 2, f"expected a worker and its work horse, found {group}"
    for process in group:
        process.send_signal(signal.SIGSTOP)
    try:
        yield group
    finally:
        for process in group:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)


def test_a_paused_writer_that_wakes_up_after_its_pull_was_taken_over_writes_nothing_into_the_store(
    tmp_path: Path, redis_url: str, fresh_hub: HubStandIn
) -> None:
    repo = f"llf-hardening/paused-{uuid.uuid4().hex[:8]}"
    fresh_hub.add_large_file(repo, "weights.bin", SIZE, seed=51)
    expected = fresh_hub.files(repo)["weights.bin"].sha256
    fresh_hub.ignore_range(repo, "weights.bin")
    fresh_hub.hold(repo, "weights.bin", after_bytes=PAUSED_AT, times=1)  # the first writer parks at 6 MiB
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url)) as stack:
        stack.start_api()
        first = stack.start_worker()
        job_id = httpx.post(f"{stack.url}/v1/pulls", json={"repo": repo}, timeout=30).json()["job_id"]
        fresh_hub.wait_until_held(repo, "weights.bin", timeout=30)
        repo_dir = stack.models_dir / f"models--{repo.replace('/', '--')}"
        blob = repo_dir / "blobs" / expected

        with paused(first) as (horse, _):
            stack.start_worker()  # judges the first one dead once its liveness key expires (5 s)
            ended = wait_job(stack.url, job_id, timeout=120)  # the second worker starts over at byte 0
            if ended["state"] != "finished":  # a clean failure is allowed; a retry must then complete it
                retry = httpx.post(f"{stack.url}/v1/pulls", json={"repo": repo}, timeout=30).json()
                if retry.get("job_id"):
                    assert wait_job(stack.url, retry["job_id"], timeout=120)["state"] == "finished"
            assert sha256_of(blob) == expected, "a blob that is not the hub's file was renamed in as verified"
            assert httpx.get(f"{stack.url}/v1/models/{repo}", timeout=10).json()["verified"] is True

            deleted = httpx.delete(f"{stack.url}/v1/models/{repo}", timeout=30)
            assert deleted.status_code == 204, deleted.text
            fresh_hub.release(repo, "weights.bin")  # the paused writer's stream may finish once it wakes
        first_horse_pid = horse.pid

        # Awake: whatever the first writer still does must not bring the deleted model back.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert httpx.get(f"{stack.url}/v1/models/{repo}", timeout=10).status_code == 404, "the model came back"
            assert not (repo_dir / "snapshots").exists(), "the woken writer linked a snapshot again"
            assert not blob.exists(), "the woken writer published its blob again"
            time.sleep(0.25)
        assert not psutil.pid_exists(first_horse_pid) or psutil.Process(first_horse_pid).status() == "zombie", (
            "the paused writer's work horse was not stopped before its job was requeued"
        )
        assert job(stack, job_id)["state"] == "finished", "the woken worker rewrote the job's outcome"


@pytest.fixture(autouse=True)
def _no_stopped_processes_left() -> Iterator[None]:
    yield
    for process in psutil.process_iter(["status", "ppid"]):
        if process.info["status"] == psutil.STATUS_STOPPED and process.info["ppid"] != os.getpid():
            with contextlib.suppress(psutil.Error):
                if "llf-models-worker" in " ".join(process.cmdline()):
                    process.send_signal(signal.SIGCONT)
