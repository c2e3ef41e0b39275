"""``llf-models-worker``: an RQ worker for the registry's queue that survives its siblings dying.

RQ already knows what to do with a job whose worker vanished: its entry in the
``StartedJobRegistry`` expires and the registry's ``cleanup()`` retries it (``Retry(max=...)``)
or fails it with ``AbandonedJobError``. What RQ lacks is a quick way to *know* a worker is
dead: the entry only expires after the job-monitoring heartbeat TTL (90 s by default). So each
of our workers keeps a short-lived liveness key in Redis (refreshed every second by a thread),
and every worker, on start and then every ``maintenance_interval_s``, marks the started
executions of workers whose key is gone as expired and hands them to RQ's own cleanup: the
job is requeued and, being idempotent and resumable, continues from the bytes on disk.

The work horse (RQ forks one per job, in its own process group) asks the kernel to SIGKILL it
if its parent dies, so killing a worker never leaves a download running unsupervised. After a
horse dies (cancel, timeout, crash), the worker drops the repo locks the horse held.

RQ's work loop quits on any Redis error met outside its dequeue wait (a heartbeat while a job
runs, maintenance). A Redis restart is not a reason for the worker process to die, so ``serve``
runs the loop again under a new worker identity once Redis answers: the horse that lost its
supervisor is killed, and the first sweep of the new identity requeues its job, which resumes
from the bytes on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
import uuid
from typing import Any

from llf_common.errors import ConfigError
from llf_common.logging import configure_logging
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer

from llf_models.settings import ModelsSettings, get_settings, quiet_http_logs
from llf_models.state import OUR_WORKERS, PREFIX, alive_key, release_locks_of

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent exits (no-op elsewhere)."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def requeue_orphans(redis: Redis, queue: Queue) -> list[str]:
    """Hand jobs started by dead llf workers to RQ's abandoned-job handling; return their ids.

    Only workers that registered as ours are judged by the liveness key, so a plain ``rq
    worker`` on the same queue is left to RQ's own (slower) heartbeat expiry.
    """
    registry = queue.started_job_registry
    orphans: list[tuple[str, str]] = []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        try:
            worker_name = Execution.fetch(execution_id, job_id, redis).worker_name
        except ValueError:
            worker_name = ""  # execution record expired: its worker is long gone
        if worker_name and (redis.exists(alive_key(worker_name)) or not redis.sismember(OUR_WORKERS, worker_name)):
            continue
        orphans.append((job_id, execution_id))
        if worker_name:
            redis.srem(OUR_WORKERS, worker_name)
            release_locks_of(redis, worker_name)
    if not orphans:
        return []
    # Score 0 = "expired long ago": RQ's cleanup then retries the job or fails it, as for any abandoned job.
    redis.zadd(registry.key, {f"{job_id}:{execution_id}": 0 for job_id, execution_id in orphans}, xx=True)
    registry.cleanup(timestamp=0)
    ids = [job_id for job_id, _ in orphans]
    log.warning("requeued jobs of a dead worker", extra={"jobs": ",".join(ids)})
    return ids


class Liveness(threading.Thread):
    """Refreshes the worker's liveness key and periodically requeues orphaned jobs."""

    def __init__(self, worker_name: str, queue_name: str, settings: ModelsSettings) -> None:
        super().__init__(name="llf-liveness", daemon=True)
        self.worker_name = worker_name
        self.queue_name = queue_name
        self.settings = settings
        self.stopped = threading.Event()
        self.redis = Redis.from_url(settings.redis_url)
        self.queue = Queue(queue_name, connection=self.redis, serializer=JSONSerializer)
        self.ttl_ms = int(settings.worker_alive_ttl_s * 1000)

    def beat(self) -> None:
        self.redis.set(alive_key(self.worker_name), "1", px=self.ttl_ms)

    def sweep(self) -> None:
        """One maintenance pass, by one worker at a time."""
        lock = self.redis.lock(f"{PREFIX}:sweep", timeout=30, blocking=False)
        if lock.acquire(blocking=False):
            try:
                requeue_orphans(self.redis, self.queue)
            finally:
                with contextlib.suppress(RedisError):
                    lock.release()

    def run(self) -> None:
        beat_every = min(1.0, self.settings.worker_alive_ttl_s / 3)
        sweeps_every = max(1, round(self.settings.maintenance_interval_s / beat_every))
        tick = 0
        while not self.stopped.is_set():
            try:
                self.beat()
                if tick % sweeps_every == 0:
                    self.sweep()
            except RedisError as exc:
                log.warning("liveness tick failed", extra={"error": str(exc)})
            except Exception:  # never let the thread die silently
                log.exception("liveness tick crashed")
            tick += 1
            self.stopped.wait(beat_every)

    def stop(self, clean: bool = True) -> None:
        """Stop beating; ``clean=False`` (Redis was lost) keeps the name among ours so a sweep requeues its job."""
        self.stopped.set()
        with contextlib.suppress(RedisError):
            self.redis.delete(alive_key(self.worker_name))
            if clean:
                self.redis.srem(OUR_WORKERS, self.worker_name)


class ModelsWorker(Worker):
    """RQ's forking worker plus liveness, orphan requeue and lock cleanup."""

    def __init__(self, *args: Any, settings: ModelsSettings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.llf_settings = settings
        self.liveness: Liveness | None = None
        self.stop_requested = False  # a warm shutdown was asked for, as opposed to the loop quitting on an error

    def work(self, *args: Any, **kwargs: Any) -> bool:
        self.liveness = Liveness(self.name, self.llf_settings.queue_name, self.llf_settings)
        self.liveness.beat()
        self.connection.sadd(OUR_WORKERS, self.name)
        self.liveness.sweep()  # jobs left by a worker killed before we started
        self.liveness.start()
        try:
            return bool(super().work(*args, **kwargs))
        finally:
            self.liveness.stop(clean=self.stop_requested)

    def request_stop(self, signum: Any, frame: Any) -> None:
        """SIGTERM/SIGINT (or RQ's shutdown command): remembered, so ``serve`` knows the loop ended on purpose."""
        self.stop_requested = True
        super().request_stop(signum, frame)

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        die_with_parent()
        super().main_work_horse(job, queue)

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
        finally:
            with contextlib.suppress(RedisError):
                release_locks_of(self.connection, self.name)


def build_worker(settings: ModelsSettings, name: str | None = None) -> ModelsWorker:
    redis = Redis.from_url(settings.redis_url)
    queue = Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)
    return ModelsWorker(
        [queue],
        connection=redis,
        serializer=JSONSerializer,
        name=name,
        settings=settings,
        job_monitoring_interval=5,
    )


def wait_for_redis(settings: ModelsSettings, max_delay_s: float = 5.0) -> None:
    """Block until Redis answers a PING, backing off up to ``max_delay_s`` between tries."""
    redis = Redis.from_url(settings.redis_url)
    delay = 0.2
    while True:
        try:
            redis.ping()
            return
        except RedisError:
            time.sleep(delay)
            delay = min(delay * 2, max_delay_s)


def serve(settings: ModelsSettings, name: str | None, burst: bool) -> None:
    """Run the work loop until a requested stop (or an empty queue in burst mode), across Redis outages."""
    attempt = 0
    while True:
        # A fresh identity each round: the old one may still be registered in Redis.
        worker = build_worker(settings, f"{name}-{attempt}" if name and attempt else name)
        if attempt == 0:
            log.info("worker starting", extra={"worker": worker.name, "queue": settings.queue_name})
        try:
            worker.work(burst=burst, logging_level=settings.log_level, with_scheduler=False)
        except RedisError as exc:  # RQ's teardown could not reach Redis either
            log.debug("worker teardown failed", extra={"error": str(exc)})
        if worker.stop_requested or burst:
            return
        if worker.horse_pid:  # a download whose supervisor quit: stop it (its job is requeued)
            with contextlib.suppress(OSError):
                worker.kill_horse()
                worker.wait_for_horse()
        log.warning("worker lost Redis; reconnecting", extra={"worker": worker.name})
        wait_for_redis(settings)
        attempt += 1
        name = name or uuid.uuid4().hex
        log.info("worker reconnected", extra={"worker": f"{name}-{attempt}"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="llf-models-worker", description="Run pull/verify/import jobs.")
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--name", help="worker name (default: random)")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ConfigError as exc:
        print(f"llf-models-worker: {exc.detail}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format, service="models-worker")
    quiet_http_logs(settings.log_level)
    settings.models_path.mkdir(parents=True, exist_ok=True)
    serve(settings, args.name, args.burst)


if __name__ == "__main__":
    main()
