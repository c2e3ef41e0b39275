"""Progress goes to job meta at a bounded rate; cancel flags are noticed on the same tick."""

from __future__ import annotations

from typing import Any

import pytest
from llf_models.errors import JobCanceled
from llf_models.progress import Reporter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Job:
    id = "j"

    def __init__(self) -> None:
        self.meta: dict[str, Any] = {}
        self.writes: list[dict[str, Any]] = []

    def save_meta(self) -> None:
        self.writes.append(dict(self.meta["progress"]))


class Flags:
    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.checks = 0

    def exists(self, key: str) -> int:
        self.checks += 1
        return int(key in self.keys)


def test_byte_updates_are_written_at_most_every_interval_with_a_rate() -> None:
    clock, job = Clock(), Job()
    reporter = Reporter(job, None, interval=0.25, clock=clock)
    reporter.phase("download", bytes_total=1000, files_total=1)
    for _ in range(100):  # 100 pieces within 0.1 s: coalesced
        clock.now += 0.001
        reporter.advance(1)
    assert len(job.writes) == 1
    clock.now += 0.25
    reporter.advance(100)
    assert len(job.writes) == 2
    last = job.writes[-1]
    assert last["bytes_done"] == 200 and last["rate_bps"] > 0 and last["updated_at"]


def test_phases_and_file_boundaries_are_written_at_once() -> None:
    clock, job = Clock(), Job()
    reporter = Reporter(job, None, interval=10, clock=clock)
    reporter.phase("preflight")
    reporter.file_started("config.json")
    reporter.file_done()
    reporter.advance(5, fresh=False)
    reporter.phase("done")
    assert [w["phase"] for w in job.writes] == ["preflight", "preflight", "preflight", "done"]
    assert job.writes[-1]["files_done"] == 1 and job.writes[-1]["current_file"] is None
    assert job.writes[-1]["rate_bps"] == 0.0


def test_warnings_are_kept_once_on_the_job() -> None:
    job = Job()
    reporter = Reporter(job, None)
    reporter.warn("unknown architecture")
    reporter.warn("unknown architecture")
    assert job.meta["warnings"] == ["unknown architecture"] and reporter.warnings == ["unknown architecture"]


def test_a_cancel_flag_is_checked_once_per_interval_and_raises() -> None:
    clock, job, flags = Clock(), Job(), Flags()
    reporter = Reporter(job, flags, interval=0.25, clock=clock)  # type: ignore[arg-type]
    for _ in range(10):
        reporter.advance(1)
    assert flags.checks == 1
    flags.keys.add("llf:models:cancel:j")
    reporter.advance(1)  # same interval: not looked at yet
    clock.now += 0.3
    with pytest.raises(JobCanceled):
        reporter.advance(1)


def test_without_a_job_the_reporter_only_counts() -> None:
    reporter = Reporter(None, None)
    reporter.phase("download", bytes_total=10)
    reporter.advance(10)
    reporter.check_cancel()
    assert reporter.progress.bytes_done == 10
