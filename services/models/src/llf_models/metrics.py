"""Prometheus metrics of the registry: the job queue, downloads, verification and failures.

The work happens in the RQ workers, other processes (other pods in Kubernetes), so the API reads
the state they leave in Redis at scrape time instead of counting as it goes: every job's state,
``job.meta`` progress and start/end times (``JobQueue.list()``). Counters stay monotonic across
scrapes by remembering, per job run (id + enqueue time: a resubmitted job reuses its id), what was
already counted: the bytes a pull had brought into the store, and the runs whose failure or
verification time was already taken. The first scrape only takes note of what is there: a registry
that restarts starts its counters at zero (a counter reset to ``rate()`` and ``increase()``) instead
of counting the past week's jobs again in one scrape.

Names: ``llf_models_jobs{state}`` (queue depth per state), ``llf_models_download_bytes_total``,
``llf_models_download_rate_bytes_per_second`` (running pulls, as their progress reports it),
``llf_models_verify_seconds`` (verify jobs, start to end) and ``llf_models_job_failures_total{kind}``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import get_args

from llf_common.wire import JobInfo, JobKind, JobState
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

CONTENT_TYPE = CONTENT_TYPE_LATEST
VERIFY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_STATES: tuple[str, ...] = get_args(JobState)
_KINDS: tuple[str, ...] = get_args(JobKind)
_FAILED = frozenset({"failed"})
Run = tuple[str, datetime | None]


class RegistryMetrics:
    """A collector over ``jobs()`` (the queue's job list); ``exposition()`` is the ``/metrics`` body."""

    def __init__(self, jobs: Callable[[], Iterable[JobInfo]]) -> None:
        self.jobs = jobs
        self.registry = CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._baseline = True
        self._pull_bytes: dict[Run, int] = {}
        self._downloaded = 0
        self._failed: set[Run] = set()
        self._failures = dict.fromkeys(_KINDS, 0)
        self._verified: set[Run] = set()
        self._verify_counts = [0] * (len(VERIFY_BUCKETS) + 1)
        self._verify_sum = 0.0
        self.registry.register(self)  # type: ignore[arg-type]

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ bookkeeping
    def observe(self, jobs: Iterable[JobInfo]) -> tuple[dict[str, int], float]:
        """Fold one listing into the counters; returns (jobs per state, current download rate)."""
        states = dict.fromkeys(_STATES, 0)
        rate = 0.0
        with self._lock:
            count, self._baseline = not self._baseline, False
            pulls: dict[Run, int] = {}
            failed: set[Run] = set()
            verified: set[Run] = set()
            for job in jobs:
                run = (job.id, job.enqueued_at)
                states[job.state] = states.get(job.state, 0) + 1
                if job.kind == "pull":
                    done = job.progress.bytes_done
                    if count and done > self._pull_bytes.get(run, 0):
                        self._downloaded += done - self._pull_bytes.get(run, 0)
                    pulls[run] = done  # a retry starts again at 0, and is counted again from there
                    if job.state == "started" and job.progress.phase == "download":
                        rate += job.progress.rate_bps
                if job.state in _FAILED:
                    failed.add(run)
                    if count and run not in self._failed:
                        self._failures[job.kind] = self._failures.get(job.kind, 0) + 1
                if job.kind == "verify" and job.state == "finished":
                    verified.add(run)
                    if count and run not in self._verified:
                        self._observe_verify(job)
            # Only runs still listed are remembered: memory follows the queue's own retention.
            self._pull_bytes, self._failed, self._verified = pulls, failed, verified
        return states, rate

    def _observe_verify(self, job: JobInfo) -> None:
        if job.started_at is None or job.ended_at is None:
            return
        seconds = max(0.0, (job.ended_at - job.started_at).total_seconds())
        index = next((i for i, bound in enumerate(VERIFY_BUCKETS) if seconds <= bound), len(VERIFY_BUCKETS))
        self._verify_counts[index] += 1
        self._verify_sum += seconds

    # ------------------------------------------------------------------ prometheus_client collector
    def collect(self) -> Iterator[Metric]:
        states, rate = self.observe(self.jobs())
        with self._lock:
            downloaded, failures = self._downloaded, dict(self._failures)
            counts, total = list(self._verify_counts), self._verify_sum
        jobs = GaugeMetricFamily("llf_models_jobs", "Jobs of the registry's queue per state.", labels=["state"])
        for state, count in states.items():
            jobs.add_metric([state], count)
        yield jobs
        yield CounterMetricFamily(
            "llf_models_download_bytes", "Bytes of model files pull jobs brought into the store.", value=downloaded
        )
        yield GaugeMetricFamily(
            "llf_models_download_rate_bytes_per_second", "Download rate of the running pulls.", value=rate
        )
        failed = CounterMetricFamily("llf_models_job_failures", "Jobs that failed, per kind.", labels=["kind"])
        for kind, count in failures.items():
            failed.add_metric([kind], count)
        yield failed
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, VERIFY_BUCKETS), "+Inf"], counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "llf_models_verify_seconds",
            "Duration of verify jobs (re-hashing a stored model).",
            buckets=buckets,
            sum_value=total,
        )
