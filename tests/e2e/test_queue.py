"""Queueing through the containers: three pulls at once, two workers."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from llf_common.wire import TERMINAL_JOB_STATES

from tests.e2e.conftest import WORKERS, Stack, hub_sha256, job, model, pull

pytestmark = pytest.mark.timeout(1800)

REPOS = ["e2e/queue-1", "e2e/queue-2", "e2e/queue-3"]  # each slowed to ~5 s by the hub stand-in


def test_three_pulls_at_once_with_two_workers_all_finish_with_progress_visible(
    stack: Stack, registry: httpx.Client, hub_api: httpx.Client
) -> None:
    assert len(stack.container_ids("worker")) == WORKERS
    ids = [pull(registry, repo) for repo in REPOS]
    assert all(ids), ids
    seen: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    most_started = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        infos = [job(registry, i) for i in ids]
        for info in infos:
            seen[info["id"]].append(info)
        most_started = max(most_started, sum(info["state"] == "started" for info in infos))
        if all(info["state"] in TERMINAL_JOB_STATES for info in infos):
            break
        time.sleep(0.25)
    final = {i: seen[i][-1] for i in ids}
    assert all(info["state"] == "finished" for info in final.values()), final
    assert most_started == WORKERS, "two workers run two pulls side by side, never three"
    assert any(info["state"] == "queued" for infos in seen.values() for info in infos), "the third pull waited"
    for job_id, infos in seen.items():
        moving = [i["progress"]["bytes_done"] for i in infos if i["state"] == "started"]
        assert any(done > 0 for done in moving), f"no progress seen while {job_id} ran"
        total = final[job_id]["progress"]["bytes_total"]
        assert total > 0 and final[job_id]["progress"]["bytes_done"] == total
    for repo in REPOS:
        info = model(registry, repo)
        assert info["verified"] is True
        expected = hub_sha256(hub_api, repo)
        assert {f["path"]: f["sha256"] for f in info["files"] if f["path"] in expected} == expected
