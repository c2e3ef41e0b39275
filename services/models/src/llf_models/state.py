"""What the registry keeps in Redis besides RQ's own keys: index, locks, cancel flags, liveness.

None of it is precious. The index is a cache of the manifests on disk (rebuilt whenever its
marker key is missing); a lock expires unless its holder keeps refreshing it, and a lock whose
holder is known dead is taken over at once; a cancel flag only matters while its job runs.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType

from redis import Redis
from redis.exceptions import RedisError

from llf_models.errors import LockLost, LockTimeout
from llf_models.store import Manifest, Store

log = logging.getLogger(__name__)

PREFIX = "llf:models"
INDEX_KEY = f"{PREFIX}:index"
INDEX_MARKER = f"{PREFIX}:index:built"
OUR_WORKERS = f"{PREFIX}:workers"


RESERVATIONS = f"{PREFIX}:reserved"


def alive_key(holder: str) -> str:
    return f"{PREFIX}:alive:{holder}"


def lock_key(repo: str) -> str:
    return f"{PREFIX}:lock:{repo}"


def generation_key(repo: str) -> str:
    return f"{PREFIX}:lockgen:{repo}"


def cancel_key(job_id: str) -> str:
    return f"{PREFIX}:cancel:{job_id}"


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# Fencing: KEYS[2] counts how often the lock was granted; a holder that was granted generation g
# may write only while the lock still names it *and* the count is still g. A holder presumed dead
# (its lock taken over) and later woken fails this check even if its name were reused.
_REFRESH = """
if redis.call('get', KEYS[1]) == ARGV[1] and redis.call('get', KEYS[2]) == ARGV[3] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


# Space still to be written by running pulls: job id -> bytes. Entries of jobs that are no longer
# queued or running (killed, finished elsewhere) are dropped as they are met.
_RESERVE = """
local others = 0
local entries = redis.call('hgetall', KEYS[1])
for i = 1, #entries, 2 do
  local job = entries[i]
  if job ~= ARGV[1] then
    local status = redis.call('hget', 'rq:job:' .. job, 'status')
    if status == 'queued' or status == 'started' or status == 'scheduled' or status == 'deferred' then
      others = others + tonumber(entries[i + 1])
    else
      redis.call('hdel', KEYS[1], job)
    end
  end
end
if others + tonumber(ARGV[2]) + tonumber(ARGV[3]) > tonumber(ARGV[4]) then return {0, others} end
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
return {1, others}
"""


def reserve_space(redis: Redis, job_id: str, needed: int, margin: int, free: int) -> tuple[bool, int]:
    """Atomically: does ``needed`` fit beside what other running pulls reserved? If so, reserve it.

    Returns (reserved, bytes other pulls hold). Each pull checks the disk against its own needs
    only, so without this two concurrent pulls can each pass and together fill the disk.
    """
    ok, others = redis.eval(_RESERVE, 1, RESERVATIONS, job_id, needed, margin, free)
    return bool(ok), int(others)


def release_space(redis: Redis, job_id: str) -> None:
    redis.hdel(RESERVATIONS, job_id)


def release_if_held(redis: Redis, key: str, holder: str) -> bool:
    """Delete ``key`` only if ``holder`` still holds it (atomic)."""
    return bool(redis.eval(_RELEASE, 1, key, holder))


class ModelIndex:
    """Repo id -> manifest JSON in one Redis hash, mirrored from the manifests on disk."""

    def __init__(self, redis: Redis, store: Store) -> None:
        self.redis = redis
        self.store = store

    def rebuild(self) -> int:
        manifests = self.store.manifests()
        with self.redis.pipeline() as pipe:
            pipe.delete(INDEX_KEY)
            if manifests:
                pipe.hset(INDEX_KEY, mapping={m.repo: m.model_dump_json() for m in manifests})
            pipe.set(INDEX_MARKER, str(time.time()))
            pipe.execute()
        log.info("model index rebuilt", extra={"models": len(manifests)})
        return len(manifests)

    def ensure(self) -> None:
        """Rebuild if Redis lost the index (flushed, or restarted without persistence)."""
        if not self.redis.exists(INDEX_MARKER):
            self.rebuild()

    def put(self, manifest: Manifest) -> None:
        self.redis.hset(INDEX_KEY, manifest.repo, manifest.model_dump_json())

    def remove(self, repo: str) -> None:
        self.redis.hdel(INDEX_KEY, repo)

    def all(self) -> list[Manifest]:
        """Every indexed manifest; falls back to reading the disk when Redis is unreachable."""
        try:
            self.ensure()
            raw = self.redis.hgetall(INDEX_KEY)
        except RedisError as exc:
            log.warning("index unavailable, reading manifests from disk", extra={"error": str(exc)})
            return self.store.manifests()
        manifests = [Manifest.model_validate_json(value) for value in raw.values()]
        return sorted(manifests, key=lambda m: m.repo)

    def get(self, repo: str) -> Manifest | None:
        try:
            self.ensure()
            raw = self.redis.hget(INDEX_KEY, repo)
        except RedisError:
            return self.store.read_manifest(repo)
        return Manifest.model_validate_json(raw) if raw else None


class RepoLock:
    """Exclusive right to write one repo's files, held in Redis by a named holder.

    The key expires after ``ttl`` seconds unless refreshed; a background thread refreshes it
    while held. If the holder's liveness key is gone (its worker was SIGKILLed), the lock is
    taken over immediately instead of waiting for the expiry.

    A holder can lose the lock while it still runs (paused past its liveness TTL, then woken), so
    every grant gets a generation (a fencing token): ``check()`` asks Redis whether the lock is
    still this holder's at this generation and raises ``LockLost`` otherwise; writers call it
    right before every rename, link, ref and manifest write, and ``ensure_held()`` (no Redis
    round trip: the refresh thread's verdict) between the pieces of a download.
    """

    def __init__(
        self,
        redis: Redis,
        repo: str,
        holder: str,
        *,
        ttl: float = 30.0,
        wait: float = 0.0,
        on_wait: Callable[[], None] | None = None,
        announce: bool = False,
    ) -> None:
        self.redis = redis
        self.repo = repo
        self.key = lock_key(repo)
        self.holder = holder
        self.ttl_ms = int(ttl * 1000)
        self.wait = wait
        self.on_wait = on_wait
        self.announce = announce  # set our own liveness key (holders that are not workers)
        self.gen_key = generation_key(repo)
        self.generation = ""
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        while True:
            if self.announce:
                self.redis.set(alive_key(self.holder), "1", px=self.ttl_ms)
            if self.redis.set(self.key, self.holder, nx=True, px=self.ttl_ms):
                break
            raw = self.redis.get(self.key)
            current = raw.decode() if isinstance(raw, bytes) else raw
            if current is not None and not self.redis.exists(alive_key(current)):
                log.warning("taking over lock of dead holder", extra={"repo": self.repo, "holder": current})
                release_if_held(self.redis, self.key, current)
                continue
            if time.monotonic() >= deadline:
                who = current or "another job"
                raise LockTimeout(f"{self.repo} is being written by another job ({who}); try again when it is done")
            if self.on_wait is not None:
                self.on_wait()
            time.sleep(0.2)
        self.generation = str(self.redis.incr(self.gen_key))
        self.lost.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._refresh, name=f"lock-{self.repo}", daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        interval = self.ttl_ms / 3000
        while not self._stop.wait(interval):
            try:
                if self.announce:
                    self.redis.set(alive_key(self.holder), "1", px=self.ttl_ms)
                if not self._still_ours():
                    self.lost.set()
                    log.warning("lost repo lock: this job stops writing", extra={"repo": self.repo})
                    return
            except RedisError as exc:  # pragma: no cover - transient; the next tick retries
                log.warning("lock refresh failed", extra={"repo": self.repo, "error": str(exc)})

    def _still_ours(self) -> bool:
        return bool(self.redis.eval(_REFRESH, 2, self.key, self.gen_key, self.holder, self.ttl_ms, self.generation))

    def check(self) -> None:
        """Raise ``LockLost`` unless the lock is still ours, asking Redis now (call before each write)."""
        try:
            ours = not self.lost.is_set() and self._still_ours()
        except RedisError as exc:
            why = type(exc).__name__
            raise LockLost(f"cannot confirm the write lock of {self.repo} is still held ({why})") from exc
        if not ours:
            self.lost.set()
            raise LockLost(f"the write lock of {self.repo} was lost (this worker was presumed dead); stopping")

    def ensure_held(self) -> None:
        """Raise ``LockLost`` if the refresh thread found the lock gone (no Redis round trip)."""
        if self.lost.is_set():
            raise LockLost(f"the write lock of {self.repo} was lost (this worker was presumed dead); stopping")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        try:
            release_if_held(self.redis, self.key, self.holder)
            if self.announce:
                self.redis.delete(alive_key(self.holder))
        except RedisError as exc:  # pragma: no cover - the key expires on its own
            log.warning("lock release failed", extra={"repo": self.repo, "error": str(exc)})

    def __enter__(self) -> RepoLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def api_holder() -> str:
    """A lock holder name for the API process (not a worker)."""
    return f"api-{uuid.uuid4().hex[:12]}"


def release_locks_of(redis: Redis, holder: str) -> int:
    """Drop every repo lock ``holder`` still holds (its work horse was killed)."""
    released = 0
    for key in redis.scan_iter(match=f"{PREFIX}:lock:*", count=200):
        if release_if_held(redis, key.decode() if isinstance(key, bytes) else key, holder):
            released += 1
    return released
