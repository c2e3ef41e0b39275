"""The gateway's domain in one object: what the HTTP routers call, and nothing they do themselves.

``Gateway`` owns the parts (settings, model resolver, engine pool, relay, metrics) and offers
one method per thing a router needs: ``serve``/``unserve``/``status``/``readiness`` for the
control plane, ``complete``/``model_list`` for the OpenAI data plane, ``exposition``/
``engine_metrics`` for observability. Routers validate HTTP, call one method and shape the
reply; a test builds a ``Gateway`` (with a fake ``ModelResolver``) and hands it to
``create_app(settings, gateway)`` or calls it directly, without monkeypatching modules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from llf_common.errors import LLFError, NotFound, Unavailable, UpstreamError
from llf_common.wire import GatewayState, GatewayStatus
from starlette.responses import Response

from llf_inference.checks import check_chat, check_completion, check_context, parse_body
from llf_inference.engine.spec import EngineSpec
from llf_inference.metrics import Metrics
from llf_inference.registry import ModelResolver, RegistryResolver
from llf_inference.relay import Relay
from llf_inference.router import pick
from llf_inference.settings import InferenceSettings
from llf_inference.supervisor import Supervisor

log = logging.getLogger(__name__)

CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "/v1/chat/completions": check_chat,
    "/v1/completions": check_completion,
}
"""The OpenAI endpoints the gateway relays, with the checks a body must pass first."""


@dataclass(frozen=True)
class Readiness:
    """What ``/readyz`` reports: ready when at least one engine is."""

    ready: bool
    state: GatewayState
    models: list[str]
    retry_after_s: int


@dataclass(frozen=True)
class EngineMetrics:
    """One engine's own ``/metrics`` reply, to pass through unchanged."""

    body: bytes
    status_code: int
    content_type: str | None


class Gateway:
    """Settings, resolver, pool, relay and metrics, with the operations the API offers.

    ``resolver`` defaults to ``RegistryResolver(settings)``; ``metrics`` to a fresh registry
    (one per app). ``serve_on_start_retry_s`` is the first pause between registry attempts
    at start-up (doubling up to 10 s); tests shorten it.
    """

    def __init__(
        self,
        settings: InferenceSettings,
        *,
        resolver: ModelResolver | None = None,
        metrics: Metrics | None = None,
        serve_on_start_retry_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.resolver: ModelResolver = resolver if resolver is not None else RegistryResolver(settings)
        self.metrics = metrics if metrics is not None else Metrics()
        self.supervisor = Supervisor(settings, on_restart=self._count_restart)
        self.relay = Relay(self.metrics, retry_after=settings.retry_after_s)
        self.serve_on_start_retry_s = serve_on_start_retry_s
        self._starting: asyncio.Task[None] | None = None

    def _count_restart(self, model: str) -> None:
        self.metrics.restarts.labels(model).inc()

    # ------------------------------------------------------------- control plane
    async def serve(self, model: str, replicas: int = 1, *, wait: bool = False) -> GatewayStatus:
        """Start serving ``model`` (a hot swap if another is served); with ``wait``, until it settles."""
        info = await self.resolver.resolve(model)
        spec = EngineSpec.from_settings(self.settings, model, info.path)
        log.info("serve", extra={"model": model, "path": info.path, "replicas": replicas})
        await self.supervisor.serve(spec, replicas)
        if not wait:
            return self.supervisor.status()
        status = await self.supervisor.wait()
        if status.state == "failed" or model not in status.models:
            raise UpstreamError(status.message or f"{model} failed to start; see `llf status` for the engine log")
        return status

    async def unserve(self) -> GatewayStatus:
        """Drain and stop every engine; the gateway is then idle."""
        await self.supervisor.unserve()
        return self.supervisor.status()

    def status(self) -> GatewayStatus:
        return self.supervisor.status()

    def readiness(self) -> Readiness:
        models = self.supervisor.served_models()
        return Readiness(bool(models), self.supervisor.state(), models, self.settings.retry_after_s)

    def serve_on_start(self, model: str) -> None:
        """Serve ``model`` in the background, waiting for the registry to come up (``make up``)."""
        self._starting = asyncio.create_task(self._serve_on_start(model), name="serve-on-start")

    async def _serve_on_start(self, model: str) -> None:
        delay = self.serve_on_start_retry_s
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

    async def close(self) -> None:
        """Stop the start-up serve, drain streams and stop every engine (the gateway is exiting)."""
        if self._starting is not None:
            self._starting.cancel()
        await self.supervisor.shutdown()

    # ------------------------------------------------------------- data plane
    async def complete(self, endpoint: str, raw: bytes, started: float) -> Response:
        """Check an OpenAI request, pick a replica and relay ``raw`` to it (streamed or not).

        Every refusal (400, 404, 503) is counted under the model's name when it is served,
        else under ``-`` (unbounded label values from clients would bloat the metrics).
        """
        model: Any = None
        try:
            body = parse_body(raw)
            model = body.get("model")
            CHECKS[endpoint](body)
            replica = pick(self.supervisor, model)
            check_context(body, replica.max_model_len)
        except LLFError as exc:
            label = model if isinstance(model, str) and model in self.supervisor.served_models() else "-"
            self.metrics.requests.labels(endpoint, label, str(exc.status_code)).inc()
            raise
        return await self.relay.forward(replica, endpoint, raw, body.get("stream") is True, started)

    def model_list(self) -> dict[str, Any]:
        """The models with a ready replica, as OpenAI's list (plus ``max_model_len``, ``replicas``)."""
        data = []
        for model in self.supervisor.served_models():
            replicas = self.supervisor.ready(model)
            data.append(
                {
                    "id": model,
                    "object": "model",
                    "created": int(min(r.created_at for r in replicas)),
                    "owned_by": "llf",
                    "max_model_len": replicas[0].max_model_len,
                    "replicas": len(replicas),
                }
            )
        return {"object": "list", "data": data}

    # ------------------------------------------------------------- observability
    def exposition(self) -> bytes:
        """The gateway's Prometheus metrics, replica gauges brought up to date first."""
        self.metrics.set_replica_states([r.state for r in self.supervisor.replicas])
        return self.metrics.exposition()

    async def engine_metrics(self, replica_id: str) -> EngineMetrics:
        """The engine's own ``/metrics`` for one replica (404 unknown, 503 not running, 502 no answer)."""
        replica = self.supervisor.find(replica_id)
        if replica is None:
            raise NotFound(f"no replica {replica_id!r}; see /v1/status for the replica ids")
        client = replica.client
        if client is None or replica.state not in ("ready", "draining"):
            raise Unavailable(f"replica {replica_id} is {replica.state}; its engine has no metrics now")
        try:
            upstream = await client.get("/metrics", timeout=10.0)
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"replica {replica_id}'s engine did not answer /metrics ({type(exc).__name__})"
            ) from None
        return EngineMetrics(upstream.content, upstream.status_code, upstream.headers.get("content-type"))
