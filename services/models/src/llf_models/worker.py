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

A worker that is only paused (``docker pause``, SIGSTOP, a stalled VM) looks dead too, and wakes
up later with its horse mid-download. So the sweep SIGKILLs the horse of a worker it judges dead
before requeueing its job (when the horse runs on this host: its pid and start time are in
Redis) and marks the job as handed on; the woken worker records no outcome or retry for that job
(it belongs to another worker now) and rejoins as a live worker. A horse on another host that
wakes up meets the repo lock's fencing token (``state.RepoLock.check``) before any write.

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
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from llf_common.logging import configure_logging
from llf_common.settings import settings_or_exit
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


def horse_key(worker_name: str) -> str:
    return f"{PREFIX}:horse:{worker_name}"


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (to tell a reused pid apart), ``None`` if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def record_horse(redis: Redis, worker_name: str, pid: int, ttl_s: float) -> None:
    """Where this worker's horse runs, so that a sweep can stop it if the worker looks dead."""
    value = json.dumps({"host": socket.gethostname(), "pid": pid, "start": process_start(pid)})
    redis.set(horse_key(worker_name), value, ex=max(60, int(ttl_s)))


def kill_horse_of(redis: Redis, worker_name: str) -> bool:
    """SIGKILL the work horse of a worker judged dead, if it runs on this host; True if one was killed.

    SIGKILL ends a stopped process too, so a paused worker's download cannot resume when it wakes.
    """
    raw = redis.get(horse_key(worker_name))
    if raw is None:
        return False
    try:
        horse = json.loads(raw)
        pid = int(horse["pid"])
    except (ValueError, KeyError, TypeError):
        return False
    if horse.get("host") != socket.gethostname() or horse.get("start") is None:
        return False
    if process_start(pid) != horse["start"]:
        return False  # gone, or the pid now belongs to another process
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
        log.warning("killed the work horse of a worker presumed dead", extra={"worker": worker_name, "pid": pid})
        return True
    return False


def handed_key(worker_name: str, job_id: str) -> str:
    """Set when a sweep hands ``job_id`` from ``worker_name`` (presumed dead) to the queue again."""
    return f"{PREFIX}:handed:{worker_name}:{job_id}"


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
            redis.set(handed_key(worker_name, job_id), "1", ex=7 * 86400)
            redis.srem(OUR_WORKERS, worker_name)
            kill_horse_of(redis, worker_name)  # before anyone else may take its locks and its job
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
        self.redis = Redis.from_url(settings.redis_connection_url())
        self.queue = Queue(queue_name, connection=self.redis, serializer=JSONSerializer)
        self.ttl_ms = int(settings.worker_alive_ttl_s * 1000)
        self.joined = False  # set once the worker registered among ours

    def beat(self) -> None:
        self.redis.set(alive_key(self.worker_name), "1", px=self.ttl_ms)
        if self.joined and not self.redis.sismember(OUR_WORKERS, self.worker_name):
            # A sweep judged us dead while we were paused: our job went back to the queue (and our
            # horse was killed if it runs here). We are alive now, so we are judged like any worker.
            log.warning("this worker was presumed dead (paused?); rejoining", extra={"worker": self.worker_name})
            self.redis.sadd(OUR_WORKERS, self.worker_name)

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
        self.liveness.joined = True
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

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        super().fork_work_horse(job, queue)
        with contextlib.suppress(RedisError):
            record_horse(self.connection, self.name, self.horse_pid, self.llf_settings.job_timeout_s + 60)

    def execute_job(self, job: Job, queue: Queue) -> None:
        with contextlib.suppress(RedisError):  # a new run of a job id this worker once had handed on is its own
            self.connection.delete(handed_key(self.name, job.id))
        try:
            super().execute_job(job, queue)
        finally:
            with contextlib.suppress(RedisError):
                self.connection.delete(horse_key(self.name))
                if not self.handed_on(job):  # otherwise the locks may be another worker's by now
                    release_locks_of(self.connection, self.name)

    def handed_on(self, job: Job) -> bool:
        """Did a sweep judge this worker dead (paused past its TTL) and hand ``job`` to another?"""
        return bool(self.connection.exists(handed_key(self.name, job.id)))

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = ""
    ) -> None:
        if self._left_behind(job):
            return
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry, exc_string=exc_string)

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: Any) -> None:
        if self._left_behind(job):
            return
        super().handle_job_success(job, queue, started_job_registry)

    def _left_behind(self, job: Job) -> bool:
        """A worker presumed dead must not record an outcome (or a retry) for a job that now runs elsewhere."""
        try:
            handed = self.handed_on(job)
        except RedisError:
            return False
        if handed:
            log.warning("this job was handed to another worker while this one was paused; leaving it alone",
                        extra={"worker": self.name, "job": job.id})  # fmt: skip
        return handed


def build_worker(settings: ModelsSettings, name: str | None = None) -> ModelsWorker:
    redis = Redis.from_url(settings.redis_connection_url())
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
    redis = Redis.from_url(settings.redis_connection_url())
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
    settings = settings_or_exit("llf-models-worker", get_settings)
    configure_logging(settings.log_level, settings.log_format, service="models-worker")
    quiet_http_logs(settings.log_level)
    settings.models_path.mkdir(parents=True, exist_ok=True)
    serve(settings, args.name, args.burst)


if __name__ == "__main__":
    main()
