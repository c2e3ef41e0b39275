"""What tests switch on to make the hub stand-in misbehave, and what it counts.

Faults are keyed by ``(repo_id, path)`` and apply to every revision, because a test thinks
"the weights file is corrupt", not "blob 3f2a... is corrupt". Counters let a test prove that
a second pull downloaded nothing, or that a resumed download asked for a Range.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

FileKey = tuple[str, str]


@dataclass
class Hold:
    """A file whose GETs stop after ``after_bytes`` until the test releases them.

    A test that needs a download *in flight* (to interrupt, cancel or kill it) holds the stream
    open instead of slowing it down: no rate is ever "slow enough" on every machine. ``paused``
    counts the streams waiting at the gate, so the test can wait until one is really there.
    """

    after_bytes: int
    times: int | None = None  # how many more GETs to hold (None: every GET until released)
    released: threading.Event = field(default_factory=threading.Event)
    paused: int = 0


@dataclass
class Faults:
    """Switches read by the server on every file request (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    corrupt_at: dict[FileKey, set[int]] = field(default_factory=dict)
    slow_bps: dict[FileKey, float] = field(default_factory=dict)
    throttle_bps: float | None = None
    interrupt_after: dict[FileKey, list[int]] = field(default_factory=dict)  # bytes, one entry per future GET
    fail_with: dict[FileKey, list[int]] = field(default_factory=dict)  # statuses, one entry per future request
    ignore_range: set[FileKey] = field(default_factory=set)  # answer 200 with the whole file, like some mirrors
    tokens: set[str] = field(default_factory=set)
    holds: dict[FileKey, Hold] = field(default_factory=dict)

    def rate_for(self, key: FileKey) -> float | None:
        """The slower of the per-file rate and the global throttle (None = full speed)."""
        with self.lock:
            rates = [r for r in (self.slow_bps.get(key), self.throttle_bps) if r]
        return min(rates) if rates else None

    def take_interrupt(self, key: FileKey) -> int | None:
        with self.lock:
            pending = self.interrupt_after.get(key)
            return pending.pop(0) if pending else None

    def ignores_range(self, key: FileKey) -> bool:
        with self.lock:
            return key in self.ignore_range

    def take_failure(self, key: FileKey) -> int | None:
        with self.lock:
            pending = self.fail_with.get(key)
            return pending.pop(0) if pending else None

    def hold_for(self, key: FileKey) -> Hold | None:
        """The hold a new GET of ``key`` must stop at, if any (counts down a hold of ``times`` GETs)."""
        with self.lock:
            hold = self.holds.get(key)
            if hold is None or hold.released.is_set() or hold.times == 0:
                return None
            if hold.times is not None:
                hold.times -= 1
            return hold

    def release(self, key: FileKey | None = None) -> None:
        """Let held streams of ``key`` (every file: ``None``) go on, and stop holding new ones."""
        with self.lock:
            keys = list(self.holds) if key is None else [key]
            for held in keys:
                hold = self.holds.pop(held, None)
                if hold is not None:
                    hold.released.set()

    def corruptions(self, key: FileKey) -> frozenset[int]:
        with self.lock:
            return frozenset(self.corrupt_at.get(key, ()))

    def reset(self) -> None:
        """Back to an honest, fast hub (tokens stay: they are configuration, not a fault)."""
        self.release()
        with self.lock:
            self.corrupt_at.clear()
            self.slow_bps.clear()
            self.throttle_bps = None
            self.interrupt_after.clear()
            self.fail_with.clear()
            self.ignore_range.clear()


@dataclass
class Counters:
    """Requests per route, and GETs / HEADs / bytes / Range headers per ``(repo_id, path)``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: Counter[str] = field(default_factory=Counter)
    gets: Counter[FileKey] = field(default_factory=Counter)
    heads: Counter[FileKey] = field(default_factory=Counter)
    bytes_served: Counter[FileKey] = field(default_factory=Counter)
    ranges: dict[FileKey, list[str]] = field(default_factory=dict)

    def request(self, route: str) -> None:
        with self.lock:
            self.requests[route] += 1

    def file_request(self, method: str, key: FileKey, range_header: str | None) -> None:
        with self.lock:
            (self.heads if method == "HEAD" else self.gets)[key] += 1
            if method != "HEAD" and range_header:
                self.ranges.setdefault(key, []).append(range_header)

    def sent(self, key: FileKey, n: int) -> None:
        with self.lock:
            self.bytes_served[key] += n

    def total_bytes(self) -> int:
        with self.lock:
            return sum(self.bytes_served.values())

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.gets.clear()
            self.heads.clear()
            self.bytes_served.clear()
            self.ranges.clear()
