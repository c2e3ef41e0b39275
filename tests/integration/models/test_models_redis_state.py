"""Index, locks, queue and orphan requeue against a real redis-server, in-process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from llf_common.errors import NotFound
from llf_models.errors import LockLost, LockTimeout
from llf_models.queueing import JobQueue, make_job_id
from llf_models.settings import ModelsSettings
from llf_models.state import OUR_WORKERS, ModelIndex, RepoLock, alive_key, lock_key, release_locks_of
from llf_models.store import Manifest, Store
from llf_models.worker import ModelsWorker, requeue_orphans
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from tests.support.net import wait_for

pytestmark = pytest.mark.timeout(60)
SHA = "a" * 40


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> ModelsSettings:
    loaded = ModelsSettings.load(home=tmp_path, redis_url=redis_url, cancel_wait_s=1.0)
    assert isinstance(loaded, ModelsSettings)
    return loaded


def manifest(repo: str) -> Manifest:
    return Manifest(repo=repo, revision="main", sha=SHA, verified_at=datetime.now(UTC))


def test_index_mirrors_the_manifests_and_rebuilds_when_redis_lost_it(tmp_path: Path, redis: Redis) -> None:
    store = Store(tmp_path)
    store.write_manifest(manifest("a/one"))
    index = ModelIndex(redis, store)
    assert [m.repo for m in index.all()] == ["a/one"]  # built lazily: the marker was missing
    index.put(manifest("b/two"))
    assert index.get("b/two") is not None and index.get("c/three") is None
    index.remove("b/two")
    redis.flushall()
    assert [m.repo for m in index.all()] == ["a/one"]
    assert index.rebuild() == 1


def test_index_falls_back_to_disk_when_redis_is_unreachable(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_manifest(manifest("a/one"))
    index = ModelIndex(Redis(port=1, socket_connect_timeout=0.2), store)
    assert [m.repo for m in index.all()] == ["a/one"]
    assert index.get("a/one") is not None


def test_a_repo_lock_excludes_others_and_is_refreshed_while_held(redis: Redis) -> None:
    redis.set(alive_key("w1"), "1")
    redis.set(alive_key("w2"), "1")
    with RepoLock(redis, "o/n", "w1", ttl=1.5):
        with pytest.raises(LockTimeout, match="being written by another job \\(w1\\)"):
            RepoLock(redis, "o/n", "w2", wait=0.3).acquire()
        time.sleep(2.0)  # longer than the ttl: the refresher kept it
        assert redis.get(lock_key("o/n")) == b"w1"
    assert redis.get(lock_key("o/n")) is None


def test_a_lock_of_a_dead_holder_is_taken_over_at_once(redis: Redis) -> None:
    redis.set(lock_key("o/n"), "ghost", px=60_000)
    started = time.monotonic()
    with RepoLock(redis, "o/n", "api-1", announce=True, wait=5):
        assert redis.get(lock_key("o/n")) == b"api-1" and redis.exists(alive_key("api-1"))
    assert time.monotonic() - started < 1
    assert not redis.exists(alive_key("api-1"))


def test_a_holder_presumed_dead_fails_the_fence_after_its_lock_was_taken_over(redis: Redis) -> None:
    redis.set(alive_key("w1"), "1")
    old = RepoLock(redis, "o/n", "w1", ttl=1.5)
    old.acquire()
    old.check()  # held: no error
    redis.delete(alive_key("w1"))  # w1 paused past its liveness TTL: a sweep releases its locks
    release_locks_of(redis, "w1")
    with RepoLock(redis, "o/n", "w2", announce=True, wait=5) as new:
        with pytest.raises(LockLost):
            old.check()  # asked right before a rename: the lock is w2's now
        # The refresher finds out too, and the download loop stops.
        wait_for(old.lost.is_set, 5, "the refresher to notice the lost lock")
        with pytest.raises(LockLost):
            old.ensure_held()
        new.check()
    old.release()


def test_the_same_holder_name_granted_again_does_not_revive_an_old_grant(redis: Redis) -> None:
    redis.set(alive_key("w1"), "1")
    first = RepoLock(redis, "o/n", "w1", ttl=5)
    first.acquire()
    redis.delete(lock_key("o/n"))  # expired (the holder was paused)
    with RepoLock(redis, "o/n", "w1", ttl=5) as second:  # the same worker name, a new grant
        second.check()
        with pytest.raises(LockLost):
            first.check()
    first.release()


def test_waiting_for_a_lock_calls_back_and_gets_it_when_released(redis: Redis) -> None:
    redis.set(alive_key("w1"), "1")
    holder = RepoLock(redis, "o/n", "w1")
    holder.acquire()
    ticks: list[int] = []
    threading.Timer(0.5, holder.release).start()
    with RepoLock(redis, "o/n", "w2", wait=5, on_wait=lambda: ticks.append(1)):
        assert ticks
    redis.set(lock_key("x/y"), "w9")
    redis.set(lock_key("x/z"), "w8")
    assert release_locks_of(redis, "w9") == 1 and redis.get(lock_key("x/z")) == b"w8"


def test_submit_is_idempotent_under_concurrency_and_replaces_ended_jobs(redis: Redis, settings: ModelsSettings) -> None:
    jobs = JobQueue(redis, settings)
    job_id = make_job_id("pull", "o/n", None, None, sha=SHA)
    assert job_id.startswith("pull-o--n-aaaaaaaaaaaa-")
    meta = {"kind": "pull", "repo": "o/n", "revision": "main", "sha": SHA}
    results: list[bool] = []

    def submit() -> None:
        results.append(jobs.submit("llf_models.jobs.pull", {"repo": "o/n"}, job_id, meta)[1])

    threads = [threading.Thread(target=submit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    info = jobs.get(job_id)
    assert info.state == "queued" and info.position == 0 and info.repo == "o/n" and info.sha == SHA
    assert [j.id for j in jobs.list()] == [job_id]

    canceled = jobs.cancel(job_id)
    assert canceled.state == "canceled"
    again, created = jobs.submit("llf_models.jobs.pull", {"repo": "o/n"}, job_id, meta)
    assert created and again.state == "queued"
    with pytest.raises(NotFound):
        jobs.get("missing")
    with pytest.raises(NotFound):
        jobs.get("../evil")
    assert jobs.ping()


def test_job_info_explains_failures_and_stops(redis: Redis, settings: ModelsSettings) -> None:
    jobs = JobQueue(redis, settings)
    queue = Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)
    job = queue.enqueue(
        "llf_models.jobs.verify", kwargs={"repo": "o/n"}, job_id="verify-x", meta={"kind": "verify", "repo": "o/n"}
    )
    job.set_status(JobStatus.FAILED)
    job.meta["canceled"] = True
    job.save_meta()
    assert jobs.get("verify-x").state == "stopped"
    job.meta = {"kind": "verify", "repo": "o/n", "error": "o/n: 1 file(s) failed", "result": {"ok": False}}
    job.save_meta()
    info = jobs.get("verify-x")
    assert info.state == "failed" and info.error == "o/n: 1 file(s) failed" and info.result == {"ok": False}
    job.set_status(JobStatus.STOPPED)
    job.meta = {"kind": "verify", "repo": "o/n"}
    job.save_meta()
    assert jobs.get("verify-x").error == "stopped on request"


def test_a_started_job_of_a_dead_worker_is_requeued_by_rq_cleanup(redis: Redis, settings: ModelsSettings) -> None:
    jobs = JobQueue(redis, settings)
    info, _ = jobs.submit("llf_models.jobs.verify", {"repo": "o/n"}, "verify-orphan", {"kind": "verify", "repo": "o/n"})
    queue = Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)
    ghost = ModelsWorker([queue], connection=redis, serializer=JSONSerializer, name="ghost", settings=settings)
    job = Job.fetch(info.id, connection=redis, serializer=JSONSerializer)
    queue.remove(job)  # what a dequeue does
    ghost.prepare_execution(job)
    job.set_status(JobStatus.STARTED)
    redis.set(lock_key("o/n"), "ghost")

    redis.sadd(OUR_WORKERS, "ghost")
    redis.set(alive_key("ghost"), "1")
    assert requeue_orphans(redis, queue) == []  # alive: left alone

    redis.delete(alive_key("ghost"))  # the worker was SIGKILLed: its liveness key expired
    assert requeue_orphans(redis, queue) == [info.id]
    assert jobs.get(info.id).state == "queued" and queue.get_job_ids() == [info.id]
    assert not redis.exists(lock_key("o/n")) and not redis.sismember(OUR_WORKERS, "ghost")
    assert Job.fetch(info.id, connection=redis, serializer=JSONSerializer).retries_left == settings.retry_max - 1


def test_a_foreign_rq_worker_is_left_to_rqs_own_heartbeat(redis: Redis, settings: ModelsSettings) -> None:
    jobs = JobQueue(redis, settings)
    info, _ = jobs.submit(
        "llf_models.jobs.verify", {"repo": "o/n"}, "verify-foreign", {"kind": "verify", "repo": "o/n"}
    )
    queue = Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)
    other = ModelsWorker([queue], connection=redis, serializer=JSONSerializer, name="plain-rq", settings=settings)
    job = Job.fetch(info.id, connection=redis, serializer=JSONSerializer)
    queue.remove(job)
    other.prepare_execution(job)
    job.set_status(JobStatus.STARTED)
    assert requeue_orphans(redis, queue) == []
    assert jobs.get(info.id).state == "started"
