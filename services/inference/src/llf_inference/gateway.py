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
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from llf_common.errors import LLFError, NotFound, Unavailable, UpstreamError
from llf_common.wire import GatewayState, GatewayStatus
from starlette.responses import Response

from llf_inference.checks import (
    InvalidRequest,
    check_chat,
    check_completion,
    check_context,
    check_model,
    parse_body,
)
from llf_inference.devices import Inventory, discover
from llf_inference.engine.address import socket_parents
from llf_inference.engine.spec import EngineSpec
from llf_inference.engine.sweep import sweep_engine_dirs
from llf_inference.keepalive import UNSET, KeepAlive, Unset, parse_keep_alive, strip_keep_alive
from llf_inference.lifecycle import Lease, Lifecycle
from llf_inference.loading import LoadingStream, Releasing
from llf_inference.metrics import Metrics
from llf_inference.model_state import Policy
from llf_inference.placement import DoesNotFit
from llf_inference.placer import Want
from llf_inference.pool import LoadedSet, model_entries, model_states
from llf_inference.registry import ModelResolver, RegistryResolver
from llf_inference.relay import Relay
from llf_inference.router import ModelNotServed, route
from llf_inference.routing import make_policy
from llf_inference.routing.keys import routing_key
from llf_inference.routing.responses import ResponseMap
from llf_inference.settings import EngineOptions, InferenceSettings
from llf_inference.supervisor import EngineFailed, Supervisor

log = logging.getLogger(__name__)

CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "/v1/chat/completions": check_chat,
    "/v1/completions": check_completion,
    "/v1/embeddings": check_model,
    "/v1/responses": check_model,
    "/tokenize": check_model,
    "/detokenize": check_model,
    "/pooling": check_model,
    "/classify": check_model,
    "/score": check_model,
    "/v1/score": check_model,
    "/rerank": check_model,
    "/v1/rerank": check_model,
    "/v2/rerank": check_model,
}
"""The JSON endpoints the gateway relays by the body's ``model``, with the checks a body must pass
first; whatever an engine does not serve is its own 404 or 400, passed through."""

FORM_ENDPOINTS = ("/v1/audio/transcriptions", "/v1/audio/translations")
"""Multipart endpoints, relayed by the form's ``model`` field."""


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
        inventory: Inventory | Callable[[], Inventory] = discover,
    ) -> None:
        self.settings = settings
        self.resolver: ModelResolver = resolver if resolver is not None else RegistryResolver(settings)
        self.metrics = metrics if metrics is not None else Metrics()
        self.supervisor = Supervisor(
            settings, on_restart=self._count_restart, inventory=inventory, on_removed=self._removed
        )
        self.loaded_set = LoadedSet(settings.run_path / "gateway-models.json")
        self.lifecycle = Lifecycle(self.supervisor, policy(settings), on_change=self._changed)
        self.routing = make_policy(settings.routing, load_factor=settings.routing_load_factor)
        self.relay = Relay(self.metrics, retry_after=settings.retry_after_s, responses=ResponseMap())
        self.serve_on_start_retry_s = serve_on_start_retry_s
        self._starting: asyncio.Task[None] | None = None
        self._replacing: set[str] = set()

    def _removed(self, model: str) -> None:
        self.lifecycle.dropped(model)

    def _changed(self) -> None:
        self.loaded_set.save(self.lifecycle.held())

    def _count_restart(self, model: str) -> None:
        self.metrics.restarts.labels(model).inc()

    # ------------------------------------------------------------- control plane
    async def serve(
        self,
        model: str,
        replicas: int | Literal["auto"] = 1,
        *,
        wait: bool = False,
        replace: str | None = None,
        gpus: Sequence[int] | None = None,
        engine: EngineOptions | None = None,
    ) -> GatewayStatus:
        """Load ``model`` beside the others (room made by evicting idle ones), or in place of ``replace``.

        A model already loaded with another replica count is converged to the new count.
        ``engine`` (``llf serve --runner pooling``) overrides the settings' engine options. With
        ``wait``, until it is ready (or failed: 502 with the reason; 507 if it fits nowhere).
        """
        info = await self.resolver.resolve(model)
        spec = EngineSpec.from_settings(self.settings, model, info.path, engine)
        want = Want(spec, replicas, tuple(gpus) if gpus else None, info.weight_bytes or info.size_bytes)
        self.supervisor.want(want)
        unfit = self.supervisor.fits_alone(model)
        if unfit is not None:  # will it fit, before anything starts or is evicted: refused at once
            raise DoesNotFit(f"cannot load {model}: {unfit}")
        self.supervisor.target, self.supervisor.message = model, None
        log.info("serve", extra={"model": model, "path": info.path, "replicas": replicas, "replace": replace})
        held = [r for r in self.supervisor.replicas if r.model == model and r.state != "failed"]
        swap = (replace is not None and replace != model and self.supervisor.has(replace)) or (
            held and replicas != len(held)
        )
        if swap:
            old = replace if replace is not None and replace != model else model
            if old != model:  # from now on, requests that name no model go to the new one
                self._replacing.add(old)
            task: asyncio.Task[None] | None = self.lifecycle.adopt(model, self._swap(spec, replicas, old))
        else:
            task = self.lifecycle.load(model)
        if not wait:
            if task is not None:
                task.add_done_callback(_quiet)
            return self.status()
        if task is not None:
            try:
                await asyncio.shield(task)
            except EngineFailed as exc:
                raise UpstreamError(exc.detail) from None
        return self.status()

    async def _swap(self, spec: EngineSpec, replicas: int | Literal["auto"], old: str) -> None:
        """The hot swap: the supervisor converges ``old``'s replicas into ``spec``'s."""
        try:
            await self.supervisor.serve(spec, replicas, replace=old)
            status = await self.supervisor.wait()
        finally:
            self._replacing.discard(old)
        if spec.model not in status.models:
            raise EngineFailed(status.message or f"{spec.model} failed to start; see `llf status` for the engine log")

    async def stop(self, model: str) -> GatewayStatus:
        """Drain and unload one model (``llf stop MODEL``); 404 if it is not loaded."""
        if self.lifecycle.state(model) is None and not self.supervisor.has(model):
            raise ModelNotServed(f"model '{model}' is not loaded; loaded: {', '.join(self._pool()) or 'none'}")
        await self.lifecycle.unload(model)
        await self.supervisor.stop(model)
        return self.status()

    async def unserve(self) -> GatewayStatus:
        """Drain and stop every engine; the gateway is then idle."""
        for view in self.lifecycle.models():
            await self.lifecycle.unload(view.model)
        await self.supervisor.unserve()
        return self.status()

    def status(self) -> GatewayStatus:
        status = self.supervisor.status()
        for model in self.supervisor.models():
            self.lifecycle.track(model)
        states = model_states(self.lifecycle.models(), self.supervisor)
        state = status.state
        if state in ("ready", "idle") and any(s.state == "loading" for s in states):
            state = "loading" if state == "ready" else "starting"
        return status.model_copy(update={"state": state, "model_states": states})

    def readiness(self) -> Readiness:
        models = self.supervisor.served_models()
        return Readiness(bool(models), self.supervisor.state(), models, self.settings.retry_after_s)

    def sweep_engine_leftovers(self) -> None:
        """Remove the engine socket directories a killed gateway left behind (``engine/sweep.py``)."""
        sweep_engine_dirs(socket_parents(self.settings.run_path), grace_s=self.settings.readiness_timeout_s)

    def serve_on_start(self, models: str | Sequence[str]) -> None:
        """Load ``models`` (and what was loaded before a restart) in the background, waiting for the registry."""
        wanted = [models] if isinstance(models, str) else list(models)
        wanted = list(dict.fromkeys([*wanted, *self.loaded_set.load()]))
        self._starting = asyncio.create_task(self._serve_all(wanted), name="serve-on-start")

    async def _serve_all(self, models: list[str]) -> None:
        for model in models:
            await self._serve_on_start(model)

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
        """Stop the start-up serve, drain streams and stop every engine (the gateway is exiting).

        The loaded set on disk is kept as it was: a restarted gateway loads the same models.
        """
        if self._starting is not None:
            self._starting.cancel()
        self.loaded_set.freeze()
        await self.lifecycle.close()
        await self.supervisor.shutdown()

    # ------------------------------------------------------------- data plane
    async def complete(self, endpoint: str, raw: bytes, started: float, session: str | None = None) -> Response:
        """Check an OpenAI request, load its model if needed, pick a replica and relay the body to it.

        ``keep_alive`` is taken out of the body first (the engine never sees it). A model that
        is not loaded but that the registry knows is loaded on demand; a stream waiting for it
        gets ``: loading`` comment lines meanwhile. Every refusal (400, 404, 503) is counted
        under the model's name when it is served, else under ``-`` (unbounded label values
        from clients would bloat the metrics). ``session`` (``X-Session-ID``) is what the
        affinity policy keys on first.
        """
        model: Any = None
        try:
            body = parse_body(raw)
            model = body.get("model")
            CHECKS[endpoint](body)
            raw, keep_alive = strip_keep_alive(raw, body)
            return await self._dispatch(endpoint, body, raw, keep_alive, started, session, "application/json")
        except LLFError as exc:
            label = model if isinstance(model, str) and model in self.supervisor.served_models() else "-"
            self.metrics.requests.labels(endpoint, label, str(exc.status_code)).inc()
            raise

    async def complete_form(
        self, endpoint: str, raw: bytes, content_type: str, fields: dict[str, str], started: float, session: str | None
    ) -> Response:
        """Relay a multipart upload (audio) unchanged, routed by its form's ``model`` (and ``stream``)."""
        model = fields.get("model") or None
        try:
            body: dict[str, Any] = {"model": model, "stream": fields.get("stream", "").lower() == "true"}
            return await self._dispatch(endpoint, body, raw, UNSET, started, session, content_type)
        except LLFError as exc:
            label = model if model in self.supervisor.served_models() else "-"
            self.metrics.requests.labels(endpoint, label, str(exc.status_code)).inc()
            raise

    async def _dispatch(
        self,
        endpoint: str,
        body: dict[str, Any],
        raw: bytes,
        keep_alive: KeepAlive | Unset,
        started: float,
        session: str | None,
        content_type: str,
    ) -> Response:
        model = body.get("model")
        route_by = (session, content_type)
        self._pool()  # account for replicas added to the pool directly
        name = self._route(model)
        stream = body.get("stream") is True
        if self.lifecycle.state(name) != "loaded":
            await self._known(name, named=model is not None)
            if stream:
                held: list[Lease] = []
                return LoadingStream(
                    name,
                    lambda: self._answer(endpoint, body, raw, name, keep_alive, started, held, route_by),
                    interval_s=self.settings.loading_comment_interval_s,
                    on_done=lambda: _release_all(held),
                )
        return await self._answer(endpoint, body, raw, name, keep_alive, started, None, route_by)

    async def _answer(
        self,
        endpoint: str,
        body: dict[str, Any],
        raw: bytes,
        model: str,
        keep_alive: KeepAlive | Unset,
        started: float,
        held: list[Lease] | None,
        route_by: tuple[str | None, str] = (None, "application/json"),
    ) -> Response:
        """Hold ``model`` (loading it if needed) for one request and relay it to a replica.

        The routing policy chooses among the model's ready replicas (``route_by`` is the
        session header and the body's media type); a ``previous_response_id`` that one of
        them produced pins the request to it.
        """
        session, content_type = route_by
        lease = await self.lifecycle.acquire(model, keep_alive)
        if held is not None:
            held.append(lease)  # released by the caller's response when it ends
        try:
            pinned = self.relay.responses.replica(body.get("previous_response_id"))
            choice = route(self.supervisor, model, self.routing, routing_key(body, session), pinned)
            replica = choice.replica
            self.metrics.routing.labels(replica.model, choice.decision).inc()
            check_context(body, replica.max_model_len)
            stream = body.get("stream") is True
            response = await self.relay.forward(replica, endpoint, raw, stream, started, content_type)
        except BaseException:
            lease.release()
            raise
        if held is not None:
            return response
        if response.media_type == "text/event-stream":
            return Releasing(response, lease.release)
        lease.release()
        return response

    def _pool(self) -> list[str]:
        """Models in the pool (any state), in the order they came."""
        for model in self.supervisor.models():
            self.lifecycle.track(model)
        return [v.model for v in self.lifecycle.models()]

    def _route(self, model: Any) -> str:
        """The model a request is for: the one it names, else the only one loaded, else ``default_model``."""
        if isinstance(model, str):
            return model
        pool = [m for m in self._pool() if m not in self._replacing]
        if len(pool) == 1:
            return pool[0]
        default = self.settings.default_model
        if not pool or default in pool:
            return default
        raise InvalidRequest(f"several models are loaded ({', '.join(pool)}); name one in the `model` field")

    async def _known(self, model: str, *, named: bool) -> None:
        """Make sure ``model`` can be loaded on demand (the registry knows and verified it), else 404."""
        if self.lifecycle.state(model) is not None or self.supervisor.has(model):
            return
        try:
            info = await self.resolver.resolve(model)
        except NotFound:
            pool = ", ".join(self._pool()) or "none (start one with `llf serve MODEL`)"
            if not named:
                raise ModelNotServed("no model is being served; start one with `llf serve MODEL`") from None
            raise ModelNotServed(
                f"model '{model}' is not served by this gateway nor in the registry; served models: {pool}"
            ) from None
        except UpstreamError as exc:
            if not named:
                raise ModelNotServed("no model is being served; start one with `llf serve MODEL`") from None
            raise ModelNotServed(f"model '{model}' is not served by this gateway ({exc.detail})") from None
        known = self.supervisor.wants.get(model)
        if known is None or known.spec.path != info.path:
            spec = EngineSpec.from_settings(self.settings, model, info.path)
            self.supervisor.want(Want(spec, 1, None, info.weight_bytes or info.size_bytes))

    async def model_list(self) -> dict[str, Any]:
        """Loaded models and, when the registry answers, every verified local model, with ``state``."""
        for model in self.supervisor.models():
            self.lifecycle.track(model)
        available = await self.resolver_listing()
        return {"object": "list", "data": model_entries(self.supervisor, self.lifecycle.models(), available)}

    async def resolver_listing(self) -> list[str]:
        """Verified models the resolver can list (none if it cannot, or the registry is down)."""
        listing = getattr(self.resolver, "list_verified", None)
        if listing is None:
            return []
        try:
            return list(await listing())
        except LLFError:
            return []

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


def policy(settings: InferenceSettings) -> Policy:
    """The lifecycle's policy from the settings (``keep_alive`` strings parsed once, here)."""
    overrides = {
        model: parse_keep_alive(options.keep_alive)
        for model, options in settings.model_overrides.items()
        if options.keep_alive is not None
    }
    return Policy(
        max_loaded_models=settings.max_loaded_models,
        max_waiting_requests=settings.max_waiting_requests,
        load_timeout_s=settings.load_timeout_s,
        retry_after_s=settings.retry_after_s,
        keep_alive=None if settings.keep_alive is None else parse_keep_alive(settings.keep_alive),
        keep_alive_overrides=overrides,
    )


def _release_all(leases: list[Lease]) -> None:
    for lease in leases:
        lease.release()


def _quiet(task: asyncio.Task[None]) -> None:
    """A background load's failure is in the status; do not log it as "never retrieved"."""
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.exception()
