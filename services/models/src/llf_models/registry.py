"""The registry's use cases, behind the HTTP routes: pull, list, show, delete, verify, import, jobs.

It composes the store (disk), the index (Redis), the job queue (RQ), the hub and the gateway,
each passed in, so tests can swap any of them for a small stand-in. Routes stay thin: they
validate, call one method here, and shape the reply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from llf_common.errors import Conflict, NotFound, Unavailable
from llf_common.wire import (
    TERMINAL_JOB_STATES,
    ImportRequest,
    JobInfo,
    ModelInfo,
    PullRequest,
    PullResponse,
    check_repo_id,
)

from llf_models.errors import InvalidInput, LockTimeout
from llf_models.hub import RemoteRepo
from llf_models.importing import check_import_root, default_import_name
from llf_models.pulling import bytes_on_disk, check_disk
from llf_models.queueing import make_job_id
from llf_models.settings import ModelsSettings
from llf_models.store import Manifest, Store

log = logging.getLogger(__name__)


class Resolver(Protocol):
    def resolve(
        self, repo: str, revision: str = "main", allow_patterns: list[str] | None = None,
        ignore_patterns: list[str] | None = None,
    ) -> RemoteRepo: ...  # fmt: skip


class Jobs(Protocol):
    def submit(self, func: str, kwargs: dict[str, Any], job_id: str, meta: dict[str, Any]) -> tuple[JobInfo, bool]: ...
    def get(self, job_id: str) -> JobInfo: ...
    def list(self) -> list[JobInfo]: ...
    def cancel(self, job_id: str) -> JobInfo: ...
    def ping(self) -> bool: ...


class Index(Protocol):
    def all(self) -> list[Manifest]: ...
    def get(self, repo: str) -> Manifest | None: ...
    def remove(self, repo: str) -> None: ...
    def rebuild(self) -> int: ...


class Served(Protocol):
    def served(self) -> set[str] | None: ...
    def in_use(self, repo: str = ...) -> set[str]: ...


LockFactory = Callable[[str], AbstractContextManager[Any]]


class Registry:
    def __init__(
        self,
        settings: ModelsSettings,
        store: Store,
        index: Index,
        jobs: Jobs,
        hub: Resolver,
        gateway: Served,
        lock_for: LockFactory,
    ) -> None:
        self.settings = settings
        self.store = store
        self.index = index
        self.jobs = jobs
        self.hub = hub
        self.gateway = gateway
        self.lock_for = lock_for

    # ------------------------------------------------------------------ pulls
    def pull(self, request: PullRequest) -> tuple[int, PullResponse]:
        """200 with the model if this commit is already here and verified, else 202 with its job."""
        remote = self.hub.resolve(request.repo, request.revision, request.allow_patterns, request.ignore_patterns)
        manifest = self.index.get(request.repo)
        if manifest is not None and manifest.sha == remote.sha and manifest.verified_at is not None:
            have = {f.path for f in manifest.files}
            if all(f.path in have for f in remote.files):
                return 200, PullResponse(state="present", repo=request.repo, revision=request.revision, sha=remote.sha)
        needed = sum(f.size - bytes_on_disk(self.store, request.repo, f) for f in remote.files)
        check_disk(self.store, needed, self.settings.disk_margin_bytes)
        job_id = make_job_id("pull", request.repo, request.allow_patterns, request.ignore_patterns, sha=remote.sha)
        info, created = self.jobs.submit(
            "llf_models.jobs.pull",
            {
                "repo": request.repo,
                "revision": request.revision,
                "sha": remote.sha,
                "allow_patterns": request.allow_patterns,
                "ignore_patterns": request.ignore_patterns,
            },
            job_id,
            {"kind": "pull", "repo": request.repo, "revision": request.revision, "sha": remote.sha},
        )
        if created:
            log.info("pull queued", extra={"repo": request.repo, "sha": remote.sha, "job": job_id})
        state = "started" if info.state == "started" else "queued"
        return 202, PullResponse(
            state=state, repo=request.repo, revision=request.revision, sha=remote.sha, job_id=info.id, job=info
        )

    # ------------------------------------------------------------------ models
    def models(self) -> list[ModelInfo]:
        served = self.gateway.served() or set()
        return [self.store.info(m, served=m.repo in served) for m in self.index.all()]

    def _manifest(self, repo: str) -> Manifest:
        manifest = self.index.get(repo) or self.store.read_manifest(repo)
        if manifest is None:
            raise NotFound(f"model {repo} not found")
        return manifest

    def model(self, repo: str) -> ModelInfo:
        manifest = self._manifest(repo)
        served = self.gateway.served() or set()
        return self.store.info(manifest, served=repo in served)

    def delete_model(self, repo: str, force: bool = False) -> None:
        """Remove a model's manifest and files; refused while the gateway uses it or a job writes it.

        A gateway that cannot say what it serves (slow, 401, 5xx, nonsense) blocks the delete with
        a 503 unless ``force``; a gateway that says it uses the model always blocks it.
        """
        known = self.index.get(repo) or self.store.read_manifest(repo)
        if known is None and not self.store.repo_dir(repo).exists():
            raise NotFound(f"model {repo} not found")
        try:
            in_use = self.gateway.in_use(repo)
        except Unavailable:
            if not force:
                raise
            log.warning("deleting without the gateway's word (--force)", extra={"repo": repo})
            in_use = set()
        if repo in in_use:
            raise Conflict(f"{repo} is served by the inference gateway (loaded, loading or asleep); serve another model"
                           " or unload it first")  # fmt: skip
        if force:
            self._cancel_jobs_of(repo)
        self._refuse_while_jobs(repo)
        try:
            with self.lock_for(repo):
                self._refuse_while_jobs(repo)  # a dead worker's job may have been requeued meanwhile
                self.store.delete(repo)
                self.index.remove(repo)
        except LockTimeout as exc:
            raise Conflict(f"{repo} is being written by a running job; cancel it or wait") from exc
        log.info("model deleted", extra={"repo": repo})

    def jobs_of(self, repo: str) -> list[JobInfo]:
        """The repo's jobs that will still write to it: queued, running, or waiting for a retry."""
        return [j for j in self.jobs.list() if j.repo == repo and j.state not in TERMINAL_JOB_STATES]

    def _cancel_jobs_of(self, repo: str) -> None:
        """Cancel the repo's jobs and wait (bounded) until none is left.

        A running job that is stopped can be requeued by RQ once before it sees its cancel flag,
        so queued ones are canceled again as long as the wait lasts.
        """
        deadline = time.monotonic() + 2 * self.settings.cancel_wait_s
        canceled: set[str] = set()
        while pending := self.jobs_of(repo):
            for job in pending:
                if job.id not in canceled or job.state != "started":
                    self.jobs.cancel(job.id)
                    canceled.add(job.id)
                    log.warning("job canceled by a forced rm", extra={"repo": repo, "job": job.id})
            if time.monotonic() >= deadline:
                return
            time.sleep(0.2)

    def _refuse_while_jobs(self, repo: str) -> None:
        """A job that runs after the delete would bring the model (or half of it) back."""
        pending = self.jobs_of(repo)
        if pending:
            named = ", ".join(f"{j.kind} job {j.id} ({j.state})" for j in pending)
            raise Conflict(f"{repo} has {named}; wait for it, cancel it (llf jobs cancel ID) or use --force")

    def verify(self, repo: str) -> JobInfo:
        manifest = self._manifest(repo)
        info, _ = self.jobs.submit(
            "llf_models.jobs.verify",
            {"repo": repo},
            make_job_id("verify", repo, sha=manifest.sha),
            {"kind": "verify", "repo": repo, "revision": manifest.revision, "sha": manifest.sha},
        )
        return info

    def import_dir(self, request: ImportRequest) -> JobInfo:
        path = Path(request.path)
        if not path.is_absolute():
            raise InvalidInput(f"path must be absolute: {request.path}")
        check_import_root(path, self.settings.allowed_import_roots())
        if not path.is_dir():
            raise NotFound(f"directory {request.path} not found (it must be visible to the registry and its workers)")
        name = request.name or default_import_name(request.path)
        try:
            check_repo_id(name)
        except ValueError as exc:
            raise InvalidInput(f"cannot derive a model name from {request.path}: pass 'name' ({exc})") from exc
        info, _ = self.jobs.submit(
            "llf_models.jobs.import_dir",
            {"path": str(path), "name": name, "link": request.link},
            make_job_id("import", name, str(path), request.link),
            {"kind": "import", "repo": name, "revision": "main", "path": str(path)},
        )
        return info

    # ------------------------------------------------------------------ jobs
    def list_jobs(self) -> list[JobInfo]:
        return self.jobs.list()

    def job(self, job_id: str) -> JobInfo:
        return self.jobs.get(job_id)

    def cancel(self, job_id: str, purge: bool = False) -> JobInfo:
        info = self.jobs.cancel(job_id)
        if purge and info.kind == "pull" and info.repo:
            if info.state in ("queued", "started"):
                info.warnings.append("partial files kept: the job had not stopped yet")
                return info
            try:
                with self.lock_for(info.repo):
                    removed = self.store.purge_partials(info.repo)
                log.info("partials purged", extra={"repo": info.repo, "files": removed})
            except LockTimeout:
                info.warnings.append("partial files kept: another job is writing this repo")
        return info

    # ------------------------------------------------------------------ health
    def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            checks["redis"] = "ok" if self.jobs.ping() else "no answer"
        except Exception as exc:  # any Redis failure means "not ready", with its name
            checks["redis"] = f"unreachable ({type(exc).__name__})"
        checks["models_dir"] = "ok" if self.store.writable() else f"not writable: {self.store.root}"
        return checks

    def startup(self) -> None:
        """Rebuild the index from disk; Redis being down is logged, not fatal (readyz says it)."""
        try:
            self.index.rebuild()
        except Exception as exc:
            log.warning("could not rebuild the model index", extra={"error": f"{type(exc).__name__}: {exc}"})
