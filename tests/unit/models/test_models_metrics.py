"""The registry's /metrics: queue depth per state, download bytes and rate, verify time, failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from llf_common.wire import JobInfo, Progress
from llf_models.app import create_app
from llf_models.metrics import RegistryMetrics
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.models.fakes import job
from tests.unit.models.test_models_api import World

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def samples(metrics: RegistryMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def pull(job_id: str, state: str, done: int, rate: float = 0.0, phase: str = "download") -> JobInfo:
    progress = Progress(phase=phase, bytes_done=done, bytes_total=1000, rate_bps=rate)  # type: ignore[arg-type]
    return job(job_id, state, enqueued_at=T0).model_copy(update={"progress": progress})


def verify(job_id: str, seconds: float, state: str = "finished") -> JobInfo:
    return JobInfo(
        id=job_id, kind="verify", repo="o/n", state=state, enqueued_at=T0,  # type: ignore[arg-type]
        started_at=T0, ended_at=T0 + timedelta(seconds=seconds),
    )  # fmt: skip


def test_jobs_are_counted_per_state_with_every_state_present() -> None:
    listing = [pull("a", "queued", 0), pull("b", "queued", 0), pull("c", "started", 10)]
    got = samples(RegistryMetrics(lambda: listing))
    assert got[("llf_models_jobs", (("state", "queued"),))] == 2
    assert got[("llf_models_jobs", (("state", "started"),))] == 1
    assert got[("llf_models_jobs", (("state", "failed"),))] == 0


def test_download_bytes_count_what_pulls_added_since_the_first_scrape() -> None:
    listing = [pull("a", "started", 100, rate=50.0)]
    metrics = RegistryMetrics(lambda: listing)
    first = samples(metrics)
    assert first[("llf_models_download_bytes_total", ())] == 0  # the first scrape only takes note
    assert first[("llf_models_download_rate_bytes_per_second", ())] == 50.0
    listing[:] = [pull("a", "started", 400, rate=60.0), pull("b", "finished", 300, phase="done")]
    assert samples(metrics)[("llf_models_download_bytes_total", ())] == 300 + 300
    listing[:] = [pull("a", "started", 0), pull("b", "finished", 300, phase="done")]  # a retry restarts
    listing.append(pull("a2", "started", 0))
    assert samples(metrics)[("llf_models_download_bytes_total", ())] == 600
    listing[:] = [pull("a", "finished", 1000, phase="done")]
    got = samples(metrics)
    assert got[("llf_models_download_bytes_total", ())] == 1600
    assert got[("llf_models_download_rate_bytes_per_second", ())] == 0


def test_failures_are_counted_once_per_run_and_again_when_a_job_is_resubmitted() -> None:
    listing: list[JobInfo] = []
    metrics = RegistryMetrics(lambda: listing)
    samples(metrics)
    listing[:] = [pull("a", "failed", 5)]
    samples(metrics)
    assert samples(metrics)[("llf_models_job_failures_total", (("kind", "pull"),))] == 1
    listing[:] = [pull("a", "failed", 5).model_copy(update={"enqueued_at": T0 + timedelta(hours=1)})]
    assert samples(metrics)[("llf_models_job_failures_total", (("kind", "pull"),))] == 2


def test_verify_durations_land_in_the_histogram_once() -> None:
    listing: list[JobInfo] = [verify("old", 9999)]
    metrics = RegistryMetrics(lambda: listing)
    samples(metrics)
    listing[:] = [verify("old", 9999), verify("v1", 3.0), verify("v2", 40.0), verify("v3", 1.0, state="started")]
    samples(metrics)
    got = samples(metrics)
    assert got[("llf_models_verify_seconds_count", ())] == 2
    assert got[("llf_models_verify_seconds_sum", ())] == 43.0
    assert got[("llf_models_verify_seconds_bucket", (("le", "5.0"),))] == 1
    assert got[("llf_models_verify_seconds_bucket", (("le", "+Inf"),))] == 2


def test_metrics_route_needs_the_api_key_and_speaks_prometheus_text(tmp_path: Path) -> None:
    world = World(tmp_path, api_key="k")
    world.jobs.jobs["a"] = pull("a", "queued", 0)
    with TestClient(create_app(world.settings, world.registry)) as client:
        assert client.get("/metrics").status_code == 401
        response = client.get("/metrics", headers={"Authorization": "Bearer k"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'llf_models_jobs{state="queued"} 1.0' in response.text
