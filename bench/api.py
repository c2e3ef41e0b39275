"""The few registry calls the benchmarks make, over HTTP exactly as a user's client would.

Routes and shapes are the wire contract (``llf_common.wire``): ``POST /v1/pulls`` answers a
``PullResponse``, jobs are ``JobInfo``; nothing here reaches into the registry's internals.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from llf_common.wire import TERMINAL_JOB_STATES


class RegistryError(RuntimeError):
    pass


def pull(http: httpx.Client, repo: str, revision: str = "main") -> dict[str, Any]:
    response = http.post("/v1/pulls", json={"repo": repo, "revision": revision})
    if response.status_code not in (200, 202):
        raise RegistryError(f"POST /v1/pulls {repo}: HTTP {response.status_code} {response.text[:300]}")
    return dict(response.json())


def verify(http: httpx.Client, repo: str) -> dict[str, Any]:
    response = http.post(f"/v1/models/{repo}/verify")
    if response.status_code not in (200, 202):
        raise RegistryError(f"POST /v1/models/{repo}/verify: HTTP {response.status_code} {response.text[:300]}")
    return dict(response.json())


def job(http: httpx.Client, job_id: str) -> dict[str, Any]:
    response = http.get(f"/v1/jobs/{job_id}")
    if response.status_code != 200:
        raise RegistryError(f"GET /v1/jobs/{job_id}: HTTP {response.status_code} {response.text[:300]}")
    return dict(response.json())


def wait_job(http: httpx.Client, job_id: str, timeout: float = 600.0, poll: float = 0.02) -> dict[str, Any]:
    """Poll a job until it ends; a failed job is an error (a benchmark measures successes only)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = job(http, job_id)
        if info["state"] in TERMINAL_JOB_STATES:
            if info["state"] != "finished":
                raise RegistryError(f"job {job_id} ended {info['state']}: {info.get('error')}")
            return info
        time.sleep(poll)
    raise TimeoutError(f"job {job_id} not finished after {timeout:.0f}s")


def pull_and_wait(http: httpx.Client, repo: str, timeout: float = 900.0) -> dict[str, Any]:
    """Pull ``repo`` and wait for it; returns the final ``JobInfo`` (or the PullResponse if present)."""
    answer = pull(http, repo)
    if answer["state"] == "present":
        return answer
    return wait_job(http, answer["job_id"], timeout)


def delete_model(http: httpx.Client, repo: str) -> None:
    response = http.delete(f"/v1/models/{repo}")
    if response.status_code not in (200, 204, 404):
        raise RegistryError(f"DELETE /v1/models/{repo}: HTTP {response.status_code} {response.text[:300]}")
