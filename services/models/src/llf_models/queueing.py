"""The API's view of the RQ queue: idempotent submit, job info, listing, cancel.

Idempotency: job ids are derived from what the job does (``pull`` of repo@sha with the same
patterns has one id), and submitting runs under a short Redis lock per id: while a job with
that id is queued or running, every submitter gets that job back; once it has ended, the next
submit replaces it. RQ's ``unique=True`` enqueue backs this up atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from datetime import UTC, datetime
from typing import Any

from llf_common.errors import NotFound
from llf_common.wire import JOB_STATES, JobInfo, JobKind, Progress
from redis import Redis
from rq import Queue, Retry
from rq.command import send_stop_job_command
from rq.exceptions import DuplicateJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from llf_models.settings import ModelsSettings
from llf_models.state import PREFIX, cancel_key

ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED, JobStatus.CREATED})
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


def make_job_id(kind: JobKind, repo: str, *parts: object, sha: str | None = None) -> str:
    """``pull-owner--name-<sha12>-<hash>``: readable, and distinct for every distinct request."""
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", repo.replace("/", "--"))[:80]
    digest = hashlib.sha256(repr((kind, repo, sha, *parts)).encode()).hexdigest()[:10]
    return f"{kind}-{slug}" + (f"-{sha[:12]}" if sha else "") + f"-{digest}"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class JobQueue:
    """RQ-backed jobs; the only place the API touches RQ."""

    def __init__(self, redis: Redis, settings: ModelsSettings) -> None:
        self.redis = redis
        self.settings = settings
        self.queue = Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)

    # ------------------------------------------------------------------ submit
    def submit(self, func: str, kwargs: dict[str, Any], job_id: str, meta: dict[str, Any]) -> tuple[JobInfo, bool]:
        """Enqueue unless a job with this id is still queued or running; returns (job, created)."""
        with self.redis.lock(f"{PREFIX}:submit:{job_id}", timeout=30, blocking_timeout=30):
            existing = self._fetch(job_id)
            if existing is not None:
                if existing.get_status(refresh=False) in ACTIVE:
                    return self.info(existing), False
                existing.delete()
            self.redis.delete(cancel_key(job_id))
            try:
                job = self.queue.enqueue(
                    func,
                    kwargs=kwargs,
                    job_id=job_id,
                    meta=meta,
                    retry=Retry(max=self.settings.retry_max),
                    job_timeout=self.settings.job_timeout_s,
                    result_ttl=self.settings.result_ttl_s,
                    failure_ttl=self.settings.failure_ttl_s,
                    description=f"{meta.get('kind')} {meta.get('repo')}",
                    unique=True,
                )
            except DuplicateJobError:  # pragma: no cover - only if a submitter bypassed the lock
                job = Job.fetch(job_id, connection=self.redis, serializer=JSONSerializer)
                return self.info(job), False
            return self.info(job), True

    # ------------------------------------------------------------------ read
    def _fetch(self, job_id: str) -> Job | None:
        if not JOB_ID_PATTERN.match(job_id):
            return None
        try:
            return Job.fetch(job_id, connection=self.redis, serializer=JSONSerializer)
        except NoSuchJobError:
            return None

    def fetch(self, job_id: str) -> Job:
        job = self._fetch(job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return job

    def get(self, job_id: str) -> JobInfo:
        return self.info(self.fetch(job_id))

    def info(self, job: Job) -> JobInfo:
        meta = job.meta or {}
        status = str(job.get_status(refresh=False).value if job.get_status(refresh=False) else "queued")
        if status == "failed" and meta.get("canceled"):
            status = "stopped"
        state = status if status in JOB_STATES else "queued"
        position = None
        if state == "queued":
            position = self.queue.get_job_position(job.id)
        error = meta.get("error")
        if error is None and state in ("failed", "stopped"):
            error = self._failure_text(job, state)
        result: dict[str, Any] | None = None
        if state == "finished":
            value = job.return_value()
            result = value if isinstance(value, dict) else None
        elif isinstance(meta.get("result"), dict):
            result = meta["result"]
        progress = Progress.model_validate(meta["progress"]) if isinstance(meta.get("progress"), dict) else Progress()
        return JobInfo(
            id=job.id,
            kind=meta.get("kind", "pull"),
            repo=meta.get("repo", ""),
            revision=meta.get("revision"),
            sha=meta.get("sha"),
            state=state,  # type: ignore[arg-type]
            position=position,
            progress=progress,
            error=error,
            warnings=list(meta.get("warnings") or []),
            enqueued_at=_utc(job.enqueued_at),
            started_at=_utc(job.started_at),
            ended_at=_utc(job.ended_at),
            result=result,
        )

    @staticmethod
    def _failure_text(job: Job, state: str) -> str:
        if state == "stopped":
            return "stopped on request"
        latest = job.latest_result()
        text = (latest.exc_string or "") if latest is not None else ""
        lines = [line for line in text.strip().splitlines() if line.strip()]
        if not lines:
            return "failed"
        last = lines[-1]
        if "AbandonedJobError" in text or "Work-horse terminated" in text:
            return "the worker running this job died and it has no retries left"
        return last[:500]

    def list(self) -> list[JobInfo]:
        """Queued, running, deferred, finished, failed and canceled jobs, newest first."""
        ids: list[str] = list(self.queue.get_job_ids())
        for registry in (
            self.queue.started_job_registry,
            self.queue.deferred_job_registry,
            self.queue.scheduled_job_registry,
            self.queue.finished_job_registry,
            self.queue.failed_job_registry,
            self.queue.canceled_job_registry,
        ):
            ids.extend(registry.get_job_ids())
        unique_ids = list(dict.fromkeys(ids))
        jobs = [j for j in Job.fetch_many(unique_ids, connection=self.redis, serializer=JSONSerializer) if j]
        infos = [self.info(job) for job in jobs]
        epoch = datetime.min.replace(tzinfo=UTC)
        return sorted(infos, key=lambda i: i.enqueued_at or epoch, reverse=True)

    # ------------------------------------------------------------------ cancel
    def cancel(self, job_id: str) -> JobInfo:
        """Stop a job: dequeue it if waiting; if running, flag it and tell its worker, then wait."""
        job = self.fetch(job_id)
        status = job.get_status()
        if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED, JobStatus.CREATED):
            with contextlib.suppress(InvalidJobOperation):  # canceled concurrently
                job.cancel()
        elif status == JobStatus.STARTED:
            self.redis.set(cancel_key(job_id), "1", ex=24 * 3600)
            # Not executing yet, or already over: the flag covers the gap.
            with contextlib.suppress(InvalidJobOperation, NoSuchJobError):
                send_stop_job_command(self.redis, job_id, serializer=JSONSerializer)
            self._wait_until_not_running(job)
        job.refresh()
        return self.info(job)

    def _wait_until_not_running(self, job: Job) -> None:
        deadline = time.monotonic() + self.settings.cancel_wait_s
        while time.monotonic() < deadline:
            try:
                if job.get_status() != JobStatus.STARTED:
                    return
            except InvalidJobOperation:  # pragma: no cover - deleted meanwhile
                return
            time.sleep(0.05)

    def ping(self) -> bool:
        return bool(self.redis.ping())
