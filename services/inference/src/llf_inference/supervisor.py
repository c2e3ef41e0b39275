"""The engine pool: replicas of several models, placed on devices, added, swapped and removed here only.

The pool is a list of ``Replica``. Models come and go two ways:

* **Added or removed one at a time** through the ``lifecycle.Engines`` methods (``place``,
  ``start``, ``wait_ready``, ``stop``, ``sleep``, ``wake``): the lifecycle decides when (load on
  demand, eviction, idle unload), the supervisor places each replica (``placer.py``:
  ``placement.place`` over the device inventory and the ledger of replicas alive) and starts or
  stops it.
* **Hot swap** (``serve(spec, n, replace=...)``): the replaced models make way for ``spec``:

  - start-then-switch (memory for both, the GPU default): start the new replicas while the old
    ones keep serving, switch when one is ready, then drain and stop the old; if the new model
    fails, the old one keeps serving.
  - stop-then-start (memory for one, the CPU default): the gateway says ``switching`` (503 +
    Retry-After), drains and stops the old replicas, then starts the new ones.

  A later ``serve`` cancels a swap in progress and converges from wherever that one got to.

The books it keeps (the replicas, where each runs, the pool's state) are a ``Roster``
(``roster.py``); how a model is sized and placed is the ``Placer``'s (``placer.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Literal

import httpx
from llf_common.errors import LLFError, UpstreamError
from llf_common.wire import GatewayStatus

from llf_inference.allocation import Allocation, Placement
from llf_inference.device_status import device_statuses
from llf_inference.devices import Inventory, discover
from llf_inference.engine.spec import EngineSpec
from llf_inference.placement import DoesNotFit
from llf_inference.placer import Placer, Want
from llf_inference.replica import Replica
from llf_inference.roster import Roster
from llf_inference.settings import InferenceSettings

log = logging.getLogger(__name__)

ALL: Literal["all"] = "all"
"""``serve(..., replace=ALL)``: the swap makes way for nothing but the new model (the old default)."""


class EngineFailed(LLFError):
    """The engine for this model gave up; retrying the request cannot help until ``llf serve``."""

    status_code = 503
    code = "engine_failed"


class Supervisor(Roster):
    """Owns the replicas; the only place that adds or removes one."""

    def __init__(
        self,
        settings: InferenceSettings,
        on_restart: Callable[[str], None] | None = None,
        *,
        inventory: Inventory | Callable[[], Inventory] = discover,
        on_removed: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.wants: dict[str, Want] = {}
        self._placer = Placer(settings, inventory)
        self._on_restart = on_restart
        self._on_removed = on_removed
        self._placed: dict[str, tuple[Placement, ...]] = {}
        self._swap: asyncio.Task[None] | None = None
        self._next_id = 0

    # ------------------------------------------------------------- status
    def status(self) -> GatewayStatus:
        return GatewayStatus(
            state=self.state(),
            models=self.served_models(),
            target=self.target,
            replicas=[self.replica_status(r) for r in self.replicas],
            message=self.message,
            devices=device_statuses(self._placer.devices(), self.ledger().placements),
        )

    # ------------------------------------------------------------- lifecycle.Engines
    def want(self, want: Want) -> None:
        """Remember how ``want.model`` is served when it is (next) loaded."""
        self.wants[want.model] = want

    def place(self, model: str) -> str | None:
        """None if every replica ``model`` wants fits on what is free now, else the one-line reason.

        An asleep model fits when the GPU memory its replicas held is free again.
        """
        if model in self.asleep:
            return self._placer.room_to_wake(model, self.placed(model), self.ledger(exclude=model))
        want = self.wants[model]
        try:
            self._placed[model] = self._place(want)
        except DoesNotFit as exc:
            return exc.detail
        return None

    def fits_alone(self, model: str) -> str | None:
        """None if ``model``'s replicas fit on the devices with no other replica alive, else why not."""
        try:
            self._place(self.wants[model], Allocation())
        except DoesNotFit as exc:
            return exc.detail
        return None

    def start(self, model: str) -> None:
        want = self.wants[model]
        placements = self._placed.pop(model, None) or self._place(want)
        self.target = model
        self.message = None
        self._add(want.spec, placements)

    async def wait_ready(self, model: str) -> None:
        mine = [r for r in self.replicas if r.model == model]
        await self._settle(mine)
        if any(r.state == "ready" for r in mine):
            return
        reason = next((r.failure for r in mine if r.failure), None) or "it stopped before it was ready"
        self.message = f"{model} failed to start: {reason}"
        raise EngineFailed(f"the engine for {model} failed: {reason}; run `llf serve {model}` to try again")

    async def stop(self, model: str) -> None:
        await self._retire([r for r in self.replicas if r.model == model])
        self.asleep.discard(model)

    def can_sleep(self, model: str) -> bool:
        return self.settings.resolved_device == "cuda" and self.settings.sleep_mode

    async def sleep(self, model: str) -> None:
        await self._engines_post(model, "/sleep?level=1")
        self.asleep.add(model)  # its GPU memory counts as free from now on

    async def wake(self, model: str) -> None:
        self.asleep.discard(model)
        await self._engines_post(model, "/wake_up")

    async def _engines_post(self, model: str, path: str) -> None:
        """POST ``path`` to every ready replica of ``model`` (vLLM's sleep-mode endpoints)."""
        for replica in self.ready(model):
            client = replica.client
            if client is None:
                continue
            try:
                response = await client.post(path, timeout=self.settings.readiness_timeout_s)
            except httpx.HTTPError as exc:
                raise UpstreamError(f"{model}'s engine did not answer {path} ({type(exc).__name__})") from None
            if response.status_code != 200:
                raise UpstreamError(f"{model}'s engine answered {response.status_code} to {path}")

    # ------------------------------------------------------------- hot swap
    async def serve(
        self, spec: EngineSpec, replicas: int | Literal["auto"] = 1, *, replace: str | Literal["all"] | None = ALL
    ) -> None:
        """Start converging to ``replicas`` engines of ``spec.model`` in place of ``replace``; returns at once.

        ``replace=ALL`` (the default) makes way for this model only; a model name swaps that
        model out and leaves the others; ``None`` adds the model beside the others.
        """
        if self._swap is not None and not self._swap.done():
            self._swap.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._swap
        current = self.wants.get(spec.model)
        if current is None or current.spec != spec:
            self.wants[spec.model] = Want(spec, replicas)
        self.target = spec.model
        self.message = None
        self._swap = asyncio.create_task(
            self._converge(spec, replicas, replace), name=f"serve-{spec.model}", context=contextvars.Context()
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
        self._remove(replicas)

    async def _converge(self, spec: EngineSpec, count: int | Literal["auto"], replace: str | None) -> None:
        alive = ("starting", "ready", "restarting")
        keep = [r for r in self.replicas if self.base(r) == spec and r.state in alive]
        keep = keep if count == "auto" else keep[:count]
        others = [r for r in self.replicas if r not in keep and (replace == ALL or r.model in (replace, spec.model))]
        old_models = {r.model for r in others if r.state == "ready"} - {spec.model}
        self.switching = bool(old_models)  # until the new model is ready (or failed)
        try:
            if self.settings.resolved_swap_strategy == "stop-then-start":
                await self._retire(others)
                new = self._add(spec, self._more(spec.model, count, len(keep)))
                await self._settle(new)
            else:
                new = self._add(spec, self._more(spec.model, count, len(keep)))
                await self._settle(new)
                if any(r.state == "ready" for r in [*keep, *new]):
                    await self._retire(others)
                elif old_models:
                    failed = next((r.failure for r in new if r.failure), None)
                    self.target = sorted(old_models)[0]
                    self.message = f"switch to {spec.model} failed, still serving {self.target}: {failed}"
                    await self._retire([r for r in others if r.model not in old_models])
        except LLFError as exc:  # the new model does not fit
            self.message = f"cannot serve {spec.model}: {exc.detail}"
        finally:
            self.switching = False
        failure = next((r.failure for r in self.replicas if r.model == spec.model and r.state == "failed"), None)
        if failure is not None and self.message is None:
            self.message = f"{spec.model} failed to start: {failure}"
        log.info("serve settled", extra={"model": spec.model, "state": self.state()})

    # ------------------------------------------------------------- placement and the pool
    def _more(self, model: str, count: int | Literal["auto"], kept: int) -> tuple[Placement, ...]:
        """Placements for the replicas a swap adds beside the ``kept`` ones."""
        if count != "auto" and count <= kept:
            return ()
        more: int | Literal["auto"] = "auto" if count == "auto" else count - kept
        return self._place(dataclasses.replace(self.wants[model], replicas=more))

    def _place(self, want: Want, live: Allocation | None = None) -> tuple[Placement, ...]:
        """Placements for ``want``'s replicas on what ``live`` (default: the live replicas) leaves free.

        Raises ``DoesNotFit`` with the one-line reason.
        """
        return self._placer.place(want, self.ledger() if live is None else live, self._next_id)

    def _add(self, spec: EngineSpec, placements: Iterable[Placement]) -> list[Replica]:
        new = []
        for where in placements:
            rid = f"r{self._next_id}"
            self._next_id += 1
            replica = Replica(rid, self._placer.engine_spec(spec, where), self.settings, on_restart=self._on_restart)
            self.placements[rid] = dataclasses.replace(where, replica_id=rid)
            self._bases[rid] = spec
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
        self._remove(replicas)

    def _remove(self, replicas: list[Replica]) -> None:
        """Take replicas out of the pool; a model left without any is reported gone (same tick)."""
        models = {r.model for r in replicas}
        self.replicas = [r for r in self.replicas if r not in replicas]
        for replica in replicas:
            self.placements.pop(replica.id, None)
            self._bases.pop(replica.id, None)
        remaining = {r.model for r in self.replicas}
        for model in sorted(models - remaining):
            if self._on_removed is not None:
                self._on_removed(model)

    async def _cancel_swap(self) -> None:
        if self._swap is not None and not self._swap.done():
            self._swap.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._swap
        self.switching = False
