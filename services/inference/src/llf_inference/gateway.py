"""The gateway's parts in one object: settings, engine pool, relay, metrics.

``serve`` is the one control operation: look the model up (registry or pinned path), build
the engine spec from settings and per-model overrides, and hand it to the supervisor.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from llf_common.errors import LLFError, UpstreamError
from llf_common.wire import GatewayStatus

from llf_inference import registry
from llf_inference.engine import EngineSpec
from llf_inference.metrics import Metrics
from llf_inference.relay import Relay
from llf_inference.settings import InferenceSettings
from llf_inference.supervisor import Supervisor

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    settings: InferenceSettings
    metrics: Metrics = field(default_factory=Metrics)
    supervisor: Supervisor = field(init=False)
    relay: Relay = field(init=False)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.settings, on_restart=self._count_restart)
        self.relay = Relay(self.metrics, retry_after=self.settings.retry_after_s)
        self._starting: asyncio.Task[None] | None = None

    def _count_restart(self, model: str) -> None:
        self.metrics.restarts.labels(model).inc()

    async def serve(self, model: str, replicas: int = 1, *, wait: bool = False) -> GatewayStatus:
        """Start serving ``model`` (a hot swap if another is served); with ``wait``, until it settles."""
        info = await registry.resolve(self.settings, model)
        spec = EngineSpec.from_settings(self.settings, model, info.path)
        log.info("serve", extra={"model": model, "path": info.path, "replicas": replicas})
        await self.supervisor.serve(spec, replicas)
        if not wait:
            return self.supervisor.status()
        status = await self.supervisor.wait()
        if status.state == "failed" or model not in status.models:
            raise UpstreamError(status.message or f"{model} failed to start; see `llf status` for the engine log")
        return status

    def serve_on_start(self, model: str) -> None:
        """Serve ``model`` in the background, waiting for the registry to come up (``make up``)."""

        async def run() -> None:
            delay = 1.0
            for _ in range(60):
                try:
                    await self.serve(model)
                    return
                except UpstreamError as exc:  # registry not up yet: keep trying for a while
                    log.info("serve on start: waiting for the registry", extra={"model": model, "reason": exc.detail})
                except LLFError as exc:
                    log.error("serve on start failed", extra={"model": model, "reason": exc.detail})
                    self.supervisor.message = f"could not serve {model} at start: {exc.detail}"
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            self.supervisor.message = f"could not serve {model} at start: the registry never answered"

        self._starting = asyncio.create_task(run(), name="serve-on-start")

    def update_gauges(self) -> None:
        counts: dict[str, int] = {}
        for replica in self.supervisor.replicas:
            counts[replica.state] = counts.get(replica.state, 0) + 1
        for state in ("starting", "ready", "draining", "restarting", "failed", "stopped"):
            self.metrics.replicas.labels(state).set(counts.get(state, 0))

    async def close(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
        await self.supervisor.shutdown()
