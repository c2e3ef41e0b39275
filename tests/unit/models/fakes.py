"""Small stand-ins for the registry's seams (job queue, index, hub, gateway, locks).

They let route and use-case tests run without Redis, RQ or a hub; the real implementations
are exercised by tests/integration/models with a real redis-server and real workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from llf_common.errors import NotFound
from llf_common.wire import JobInfo, Progress
from llf_models.errors import LockLost, LockTimeout
from llf_models.hub import RemoteFile, RemoteRepo
from llf_models.store import Manifest

SHA = "a" * 40


class FakeJobs:
    def __init__(self) -> None:
        self.jobs: dict[str, JobInfo] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.script: dict[str, list[JobInfo]] = {}  # job id -> what successive get() calls return
        self.up = True

    def submit(self, func: str, kwargs: dict[str, Any], job_id: str, meta: dict[str, Any]) -> tuple[JobInfo, bool]:
        existing = self.jobs.get(job_id)
        if existing is not None and existing.state in ("queued", "started"):
            return existing, False
        self.calls.append((func, kwargs))
        info = JobInfo(
            id=job_id,
            kind=meta["kind"],
            repo=meta["repo"],
            revision=meta.get("revision"),
            sha=meta.get("sha"),
            state="queued",
            position=len(self.jobs),
            enqueued_at=datetime.now(UTC),
        )
        self.jobs[job_id] = info
        return info, True

    def get(self, job_id: str) -> JobInfo:
        if self.script.get(job_id):
            self.jobs[job_id] = self.script[job_id].pop(0)
        if job_id not in self.jobs:
            raise NotFound(f"job {job_id} not found")
        return self.jobs[job_id]

    def list(self) -> list[JobInfo]:
        return list(self.jobs.values())

    def cancel(self, job_id: str) -> JobInfo:
        info = self.get(job_id)
        if info.state in ("queued", "started"):
            info = info.model_copy(update={"state": "stopped" if info.state == "started" else "canceled"})
            self.jobs[job_id] = info
        return info

    def ping(self) -> bool:
        if not self.up:
            raise ConnectionError("redis down")
        return True


class FakeIndex:
    def __init__(self) -> None:
        self.manifests: dict[str, Manifest] = {}
        self.rebuilt = 0
        self.fail_rebuild = False

    def all(self) -> list[Manifest]:
        return sorted(self.manifests.values(), key=lambda m: m.repo)

    def get(self, repo: str) -> Manifest | None:
        return self.manifests.get(repo)

    def put(self, manifest: Manifest) -> None:
        self.manifests[manifest.repo] = manifest

    def remove(self, repo: str) -> None:
        self.manifests.pop(repo, None)

    def rebuild(self) -> int:
        if self.fail_rebuild:
            raise ConnectionError("redis down")
        self.rebuilt += 1
        return len(self.manifests)


class FakeHub:
    def __init__(self, files: tuple[RemoteFile, ...] | None = None, sha: str = SHA) -> None:
        self.files = files or (RemoteFile("config.json", 10, "b" * 40, None, False),)
        self.sha = sha
        self.error: Exception | None = None
        self.calls = 0

    def resolve(
        self,
        repo: str,
        revision: str = "main",
        allow_patterns: list[str] | None = None,
        ignore_patterns: list[str] | None = None,
    ) -> RemoteRepo:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return RemoteRepo(repo=repo, revision=revision, sha=self.sha, files=self.files)


class FakeGateway:
    def __init__(self, served: set[str] | None = None) -> None:
        self.models: set[str] | None = set() if served is None else served  # None: the gateway cannot say

    def served(self) -> set[str] | None:
        return self.models

    def in_use(self, repo: str = "the model") -> set[str]:
        if self.models is None:
            from llf_common.errors import Unavailable

            raise Unavailable(f"cannot confirm the gateway is not serving {repo}; retry or use --force")
        return self.models


class FakeLock:
    """What a job holds while it writes; ``lose_after`` checks it is lost (its worker was presumed dead)."""

    def __init__(self, lose_after: int | None = None) -> None:
        self.lose_after = lose_after
        self.checks = 0

    def check(self) -> None:
        self.checks += 1
        if self.lose_after is not None and self.checks > self.lose_after:
            raise LockLost("the write lock was lost (this worker was presumed dead); stopping")

    def ensure_held(self) -> None:
        if self.lose_after is not None and self.checks >= self.lose_after:
            raise LockLost("the write lock was lost (this worker was presumed dead); stopping")


class FakeLocks:
    def __init__(self) -> None:
        self.busy: set[str] = set()
        self.taken: list[str] = []
        self.lock = FakeLock()

    @contextlib.contextmanager
    def __call__(self, repo: str) -> Iterator[FakeLock]:
        if repo in self.busy:
            raise LockTimeout(f"{repo} is being written by another job")
        self.taken.append(repo)
        yield self.lock


def job(job_id: str, state: str, bytes_done: int = 0, **extra: Any) -> JobInfo:
    return JobInfo(
        id=job_id,
        kind="pull",
        repo="o/n",
        state=state,  # type: ignore[arg-type]
        progress=Progress(phase="download", bytes_done=bytes_done, bytes_total=100),
        **extra,
    )
