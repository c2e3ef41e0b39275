"""Settings of the model registry and its workers (section ``models`` of the config file).

Every knob here can be set as ``LLF_MODELS_<NAME>`` in the environment or as ``<name>`` in the
``models`` section of the config file (the naming rule of ``llf_common.settings``); the shared
ones (``LLF_MODELS_DIR``, ``REDIS_URL``, ``HF_ENDPOINT``, ``HF_TOKEN``, ``LLF_API_KEY`` ...) come
from ``LLFSettings``.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from llf_common.settings import LLFSettings
from pydantic import Field

GIB = 1 << 30


class ModelsSettings(LLFSettings):
    """What the registry API and the workers need; both read the same object."""

    section = "models"

    host: str = Field("127.0.0.1", description="Address the registry API listens on.")
    port: int = Field(8001, description="Port of the registry API.", ge=0, le=65535)
    workers: int = Field(1, description="Worker processes local mode starts.", ge=1, le=64)
    queue_name: str = Field("llf-models", description="RQ queue of pull, verify and import jobs.", min_length=1)
    job_timeout_s: int = Field(6 * 3600, description="A job running longer than this is killed.", ge=10)
    retry_max: int = Field(
        3, description="How often a job is retried after its worker died or it hit an unexpected error.", ge=1
    )
    result_ttl_s: int = Field(7 * 86400, description="How long finished jobs stay listed.", ge=60)
    failure_ttl_s: int = Field(7 * 86400, description="How long failed jobs stay listed.", ge=60)
    lock_ttl_s: float = Field(30.0, description="Expiry of a per-repo write lock; refreshed while held.", gt=1)
    lock_wait_s: float = Field(3600.0, description="How long a job waits for another job on the same repo.", ge=0)
    disk_margin_bytes: int = Field(GIB, description="Free space that must remain after a download completes.", ge=0)
    progress_interval_s: float = Field(0.25, description="Minimum time between progress updates.", gt=0)
    hub_timeout_s: float = Field(30.0, description="Timeout of one Hub request (connect and read).", gt=0)
    download_attempts: int = Field(5, description="Attempts per file on network errors before the job fails.", ge=1)
    gateway_timeout_s: float = Field(2.0, description="Timeout asking the gateway what it serves.", gt=0)
    worker_alive_ttl_s: float = Field(
        5.0, description="A worker silent for this long is dead; its jobs are requeued.", ge=1
    )
    maintenance_interval_s: float = Field(
        2.0, description="How often a worker looks for jobs orphaned by a dead worker.", gt=0
    )
    cancel_wait_s: float = Field(3.0, description="How long DELETE of a job waits for it to stop.", ge=0)
    import_roots: list[Path] | None = Field(
        None, description="Directories imports may come from (default: your home, $LLF_HOME, the models dir)."
    )

    def allowed_import_roots(self) -> list[Path]:
        """Where imports may read: the API runs as a service, and anyone with the key may call it."""
        if self.import_roots is not None:
            return [Path(root).expanduser() for root in self.import_roots]
        return [Path.home(), self.home, self.models_path]


@lru_cache(maxsize=1)
def get_settings() -> ModelsSettings:
    """The process-wide settings, read once (environment > config file > defaults)."""
    settings = ModelsSettings.load()
    assert isinstance(settings, ModelsSettings)
    return settings


def quiet_http_logs(level: str) -> None:
    """huggingface_hub's HTTP client (httpx2) logs every request at INFO; keep that for DEBUG."""
    logging.getLogger("httpx2").setLevel(logging.INFO if level == "DEBUG" else logging.WARNING)
