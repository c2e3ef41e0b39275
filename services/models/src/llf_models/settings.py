"""Settings of the model registry and its workers (section ``models`` of the config file).

Every knob here can be set as ``LLF_MODELS_<NAME>`` in the environment or as ``<name>`` in the
``models`` section of the config file; the shared ones (``LLF_MODELS_DIR``, ``REDIS_URL``,
``HF_ENDPOINT``, ``HF_TOKEN``, ``LLF_API_KEY`` ...) come from ``LLFSettings``.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from llf_common.settings import LLFSettings
from pydantic import AliasChoices, Field

GIB = 1 << 30


def _knob(default: Any, name: str, description: str, **kwargs: Any) -> Any:
    """A field read from ``LLF_MODELS_<NAME>`` or from ``<name>`` in the config file section."""
    return Field(
        default,
        validation_alias=AliasChoices(f"LLF_MODELS_{name.upper()}", name),
        description=description,
        **kwargs,
    )


class ModelsSettings(LLFSettings):
    """What the registry API and the workers need; both read the same object."""

    section = "models"

    host: str = _knob("127.0.0.1", "host", "Address the registry API listens on.")
    port: int = _knob(8001, "port", "Port of the registry API.", ge=0, le=65535)
    workers: int = _knob(1, "workers", "Worker processes local mode starts.", ge=1, le=64)
    queue_name: str = _knob("llf-models", "queue_name", "RQ queue of pull, verify and import jobs.", min_length=1)
    job_timeout_s: int = _knob(6 * 3600, "job_timeout_s", "A job running longer than this is killed.", ge=10)
    retry_max: int = _knob(
        3, "retry_max", "How often a job is retried after its worker died or it hit an unexpected error.", ge=1
    )
    result_ttl_s: int = _knob(7 * 86400, "result_ttl_s", "How long finished jobs stay listed.", ge=60)
    failure_ttl_s: int = _knob(7 * 86400, "failure_ttl_s", "How long failed jobs stay listed.", ge=60)
    lock_ttl_s: float = _knob(30.0, "lock_ttl_s", "Expiry of a per-repo write lock; refreshed while held.", gt=1)
    lock_wait_s: float = _knob(3600.0, "lock_wait_s", "How long a job waits for another job on the same repo.", ge=0)
    disk_margin_bytes: int = _knob(
        GIB, "disk_margin_bytes", "Free space that must remain after a download completes.", ge=0
    )
    progress_interval_s: float = _knob(0.25, "progress_interval_s", "Minimum time between progress updates.", gt=0)
    hub_timeout_s: float = _knob(30.0, "hub_timeout_s", "Timeout of one Hub request (connect and read).", gt=0)
    download_attempts: int = _knob(
        5, "download_attempts", "Attempts per file on network errors before the job fails.", ge=1
    )
    gateway_timeout_s: float = _knob(2.0, "gateway_timeout_s", "Timeout asking the gateway what it serves.", gt=0)
    worker_alive_ttl_s: float = _knob(
        5.0, "worker_alive_ttl_s", "A worker silent for this long is dead; its jobs are requeued.", ge=1
    )
    maintenance_interval_s: float = _knob(
        2.0, "maintenance_interval_s", "How often a worker looks for jobs orphaned by a dead worker.", gt=0
    )
    cancel_wait_s: float = _knob(3.0, "cancel_wait_s", "How long DELETE of a job waits for it to stop.", ge=0)


@lru_cache(maxsize=1)
def get_settings() -> ModelsSettings:
    """The process-wide settings, read once (environment > config file > defaults)."""
    settings = ModelsSettings.load()
    assert isinstance(settings, ModelsSettings)
    return settings


def quiet_http_logs(level: str) -> None:
    """huggingface_hub's HTTP client (httpx2) logs every request at INFO; keep that for DEBUG."""
    logging.getLogger("httpx2").setLevel(logging.INFO if level == "DEBUG" else logging.WARNING)
