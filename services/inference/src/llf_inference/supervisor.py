"""The engine pool and hot swap: converge the list of replicas to what ``serve()`` asked for.

The pool is a list of ``Replica`` (several models, or several replicas of one, are fine);
``serve(spec, n)`` makes it "n ready replicas of this model, nothing else":

* start-then-switch (memory for two engines, the GPU default): start the new replicas while
  the old ones keep serving, switch traffic when one is ready, then drain and stop the old;
  if the new model fails, the old one keeps serving.
* stop-then-start (memory for one, the CPU default): the gateway says ``switching`` (503 +
  Retry-After), drains and stops the old replicas, then starts the new ones.

A later ``serve`` cancels a swap in progress and converges from wherever that one got to.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterable

from llf_common.wire import GatewayState, GatewayStatus

from llf_inference.engine.spec import EngineSpec
from llf_inference.replica import Replica
from llf_inference.settings import InferenceSettings

log = logging.getLogger(__name__)


class Supervisor:
    """Owns the replicas; the only place that adds or removes one."""

    def __init__(self, settings: InferenceSettings, on_restart: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.replicas: list[Replica] = []
        self.target: str | None = None
        self.switching = False
        self.message: str | None = None
        self._on_restart = on_restart
        self._swap: asyncio.Task[None] | None = None
        self._next_id = 0

    # ------------------------------------------------------------- queries
    def ready(self, model: str | None = None) -> list[Replica]:
        return [r for r in self.replicas if r.state == "ready" and (model is None or r.model == model)]

    def served_models(self) -> list[str]:
        """Models with at least one ready replica, in pool order."""
        return list(dict.fromkeys(r.model for r in self.ready()))

    def find(self, rid: str) -> Replica | None:
        return next((r for r in self.replicas if r.id == rid), None)

    def state(self) -> GatewayState:
        if self.switching:
            return "switching"
        mine = [r for r in self.replicas if r.model == self.target] if self.target else self.replicas
        if not mine:
            return "idle" if self.target is None else "starting"
        ready = sum(r.state == "ready" for r in mine)
        if ready == len(mine):
            return "ready"
        if ready:
            return "degraded"
        if all(r.state == "failed" for r in mine):
            return "failed"
        return "starting" if all(r.state == "starting" for r in mine) else "degraded"

    def status(self) -> GatewayStatus:
        return GatewayStatus(
            state=self.state(),
            models=self.served_models(),
            target=self.target,
            replicas=[r.status() for r in self.replicas],
            message=self.message,
        )

    # ------------------------------------------------------------- control
    async def serve(self, spec: EngineSpec, replicas: int = 1) -> None:
        """Start converging to ``replicas`` engines of ``spec.model``; returns at once."""
        if self._swap is not None and not self._swap.done():
            self._swap.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._swap
        self.target = spec.model
        self.message = None
        self._swap = asyncio.create_task(
            self._converge(spec, replicas), name=f"serve-{spec.model}", context=contextvars.Context()
        )

    async def wait(self, timeout: float | None = None) -> GatewayStatus:
        """Wait for the swap in progress and for the target's replicas to settle."""
        async with asyncio.timeout(timeout):
            if self._swap is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(self._swap)
            for replica in [r for r in self.replicas if r.model == self.target]:
                await replica.wait_settled()
        return self.status()

    async def unserve(self) -> None:
        """Stop every engine (drained) and forget the target."""
        await self._cancel_swap()
        self.target = None
        self.message = None
        await self._retire(list(self.replicas))

    async def shutdown(self, drain_timeout: float | None = None) -> None:
        """Drain (bounded) and stop everything; the gateway is exiting."""
        await self._cancel_swap()
        replicas = list(self.replicas)
        timeout = self.settings.drain_timeout_s if drain_timeout is None else drain_timeout
        await asyncio.gather(*(r.drain(timeout) for r in replicas))
        await asyncio.gather(*(r.stop() for r in replicas), return_exceptions=True)
        self.replicas = [r for r in self.replicas if r not in replicas]

    # ------------------------------------------------------------- the swap
    async def _converge(self, spec: EngineSpec, count: int) -> None:
        keep = [r for r in self.replicas if r.spec == spec and r.state not in ("failed", "stopped", "draining")]
        others = [r for r in self.replicas if r not in keep[:count]]
        keep = keep[:count]
        old_models = {r.model for r in others if r.state == "ready"} - {spec.model}
        self.switching = bool(old_models)  # until the new model is ready (or failed)
        try:
            if self.settings.resolved_swap_strategy == "stop-then-start":
                await self._retire(others)
                new = self._add(spec, count - len(keep))
                await self._settle(new)
            else:
                new = self._add(spec, count - len(keep))
                await self._settle(new)
                if any(r.state == "ready" for r in [*keep, *new]):
                    await self._retire(others)
                elif old_models:
                    failed = next((r.failure for r in new if r.failure), None)
                    self.target = sorted(old_models)[0]
                    self.message = f"switch to {spec.model} failed, still serving {self.target}: {failed}"
                    await self._retire([r for r in others if r.model not in old_models])
        finally:
            self.switching = False
        failure = next((r.failure for r in self.replicas if r.model == spec.model and r.state == "failed"), None)
        if failure is not None and self.message is None:
            self.message = f"{spec.model} failed to start: {failure}"
        log.info("serve settled", extra={"model": spec.model, "state": self.state()})

    def _add(self, spec: EngineSpec, count: int) -> list[Replica]:
        new = []
        for _ in range(max(0, count)):
            replica = Replica(f"r{self._next_id}", spec, self.settings, on_restart=self._on_restart)
            self._next_id += 1
            self.replicas.append(replica)
            replica.start()
            new.append(replica)
        return new

    async def _settle(self, replicas: Iterable[Replica]) -> None:
        await asyncio.gather(*(r.wait_settled() for r in replicas))

    async def _retire(self, replicas: list[Replica]) -> None:
        """Drain (bounded by drain_timeout_s), stop and remove replicas."""
        if not replicas:
            return
        await asyncio.gather(*(r.drain(self.settings.drain_timeout_s) for r in replicas))
        await asyncio.gather(*(r.stop() for r in replicas))
        self.replicas = [r for r in self.replicas if r not in replicas]

    async def _cancel_swap(self) -> None:
        if self._swap is not None and not self._swap.done():
            self._swap.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._swap
        self.switching = False
