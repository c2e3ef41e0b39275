"""Progress of a running job, written into ``job.meta`` at a bounded rate.

Why bounded: a download loop sees a piece every few kilobytes; writing meta on each would turn
Redis into the bottleneck. Updates are coalesced to one write per ``interval`` (0.25 s by
default), except phase changes and file boundaries, which are written at once so a client never
misses them. The same tick checks the job's cancel flag, so a cancel is noticed within one
interval even when no worker command arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from llf_common.wire import Phase, Progress
from redis import Redis

from llf_models.errors import JobCanceled
from llf_models.state import cancel_key


class MetaJob(Protocol):
    """The part of ``rq.job.Job`` the reporter uses."""

    id: str
    meta: dict[str, Any]

    def save_meta(self) -> None: ...


class Reporter:
    """Accumulates progress; flushes it to the job at most every ``interval`` seconds."""

    def __init__(
        self,
        job: MetaJob | None,
        redis: Redis | None = None,
        *,
        interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = job
        self.redis = redis
        self.interval = interval
        self.clock = clock
        self.progress = Progress()
        self._last_flush = float("-inf")
        self._last_cancel_check = float("-inf")
        self._window_start = clock()
        self._window_bytes = 0
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ updates
    def phase(self, phase: Phase, **totals: int) -> None:
        self.progress.phase = phase
        for key, value in totals.items():
            setattr(self.progress, key, value)
        if phase == "done":
            self.progress.current_file = None
            self.progress.rate_bps = 0.0
        self.flush(force=True)

    def file_started(self, name: str) -> None:
        self.progress.current_file = name
        self.flush(force=True)

    def file_done(self) -> None:
        self.progress.files_done += 1
        self.flush(force=True)

    def advance(self, nbytes: int, fresh: bool = True) -> None:
        """Count bytes; ``fresh`` bytes came over the network and count towards the rate."""
        self.progress.bytes_done += nbytes
        if fresh:
            self._window_bytes += nbytes
        self.flush()
        self.check_cancel()

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            if self.job is not None:
                self.job.meta["warnings"] = list(self.warnings)
            self.flush(force=True)

    # ------------------------------------------------------------------ output
    def flush(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_flush < self.interval:
            return
        elapsed = now - self._window_start
        if elapsed >= self.interval:
            instant = self._window_bytes / elapsed
            previous = self.progress.rate_bps
            self.progress.rate_bps = round(instant if previous == 0 else 0.5 * previous + 0.5 * instant, 1)
            self._window_start, self._window_bytes = now, 0
        self._last_flush = now
        self.progress.updated_at = datetime.now(UTC)
        if self.job is not None:
            self.job.meta["progress"] = self.progress.model_dump(mode="json")
            self.job.save_meta()

    def check_cancel(self) -> None:
        """Raise ``JobCanceled`` if the API flagged this job (checked at most every interval)."""
        if self.job is None or self.redis is None:
            return
        now = self.clock()
        if now - self._last_cancel_check < self.interval:
            return
        self._last_cancel_check = now
        if self.redis.exists(cancel_key(self.job.id)):
            raise JobCanceled("canceled on request")
