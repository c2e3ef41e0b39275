"""What every job run needs, and how a failure is recorded on the job.

Failures end up in the job as ``meta["error"]``: one readable line, never the token. Failures
a retry cannot fix (``errors.Permanent``) turn off the job's remaining RQ retries; everything
else (a killed worker, a flaky network) is retried by RQ.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from llf_common.errors import LLFError
from redis import Redis
from rq.job import Job, get_current_job

from llf_models.errors import JobCanceled, Permanent
from llf_models.progress import Reporter
from llf_models.settings import ModelsSettings, get_settings
from llf_models.state import ModelIndex, RepoLock
from llf_models.store import Store

log = logging.getLogger(__name__)


@dataclass
class JobScope:
    """What one job run needs; built from the current RQ job (or standalone)."""

    settings: ModelsSettings
    store: Store
    redis: Redis
    reporter: Reporter
    holder: str
    job: Job | None = None
    index: ModelIndex = field(init=False)

    def __post_init__(self) -> None:
        self.index = ModelIndex(self.redis, self.store)

    def lock(self, repo: str) -> RepoLock:
        return RepoLock(
            self.redis,
            repo,
            self.holder,
            ttl=self.settings.lock_ttl_s,
            wait=self.settings.lock_wait_s,
            on_wait=self.reporter.check_cancel,
            announce=self.job is None,
        )


@contextlib.contextmanager
def job_scope(settings: ModelsSettings | None = None, redis: Redis | None = None) -> Iterator[JobScope]:
    settings = settings or get_settings()
    job = get_current_job()
    if redis is None:
        redis = job.connection if job is not None else Redis.from_url(settings.redis_connection_url())
    holder = os.environ.get("RQ_WORKER_ID") or f"local-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    if job is not None:
        job.meta.pop("error", None)
        job.meta["attempts"] = int(job.meta.get("attempts", 0)) + 1
        job.save_meta()
    reporter = Reporter(job, redis, interval=settings.progress_interval_s)
    scope = JobScope(settings, Store(settings.models_path), redis, reporter, holder, job)
    try:
        yield scope
    except BaseException as exc:
        message = redact(describe(exc), settings)
        log.warning("job failed", extra={"job": job.id if job else None, "error": message})
        if job is not None:
            job.meta["error"] = message
            job.meta["canceled"] = isinstance(exc, JobCanceled)
            job.save_meta()
            if isinstance(exc, Permanent):
                job.retries_left = 0  # the worker's failure handler reads this: no retry
        raise


def describe(exc: BaseException) -> str:
    """One line for a person: our errors say it themselves, others get their type."""
    if isinstance(exc, LLFError):
        return exc.detail
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def redact(text: str, settings: ModelsSettings) -> str:
    token = settings.hf_token.get_secret_value() if settings.hf_token else ""
    return text.replace(token, "***") if token else text
