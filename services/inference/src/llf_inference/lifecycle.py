"""The model lifecycle: which models are loaded, when one is loaded, slept or unloaded.

The pool holds replicas of several models; this module decides, the supervisor acts (it
stays the only place that adds or removes a replica, reached through ``Engines``). The
guarantees:

* **Load on demand, once.** A request for a model that is not loaded starts its load and
  waits for it; concurrent requests for the same model wait for the same load. A wait is
  bounded by ``load_timeout_s`` (then 503 + Retry-After), and at most
  ``max_waiting_requests`` requests wait at a time (beyond: 503 + Retry-After).
* **Room is made, never stolen.** A model that does not fit gets the room of the least
  recently used *idle* model; a busy one is never evicted, the load waits instead (``room.py``
  says how). Each load therefore serves the requests that queued for it before its model can be
  evicted again, so two clients taking turns on two models with a one-model budget swap once
  per turn, never in a loop.
* **Idle unload.** Once a model has nothing in flight, it is unloaded (or put to sleep) after
  its ``keep_alive``; ``residents.py`` keeps the table of models and does the unloading.

What the supervisor does on its own is reported here too: a hot swap (``adopt``: requests
for the incoming model wait for the swap instead of starting a load of their own), replicas
added directly (``track``) and a model it removed (``dropped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from llf_common.errors import LLFError, Unavailable

from llf_inference.keepalive import UNSET, KeepAlive, Unset
from llf_inference.model_state import Engines, Entry, ModelState, ModelView, Policy
from llf_inference.placement import DoesNotFit
from llf_inference.residents import Residents
from llf_inference.room import Eviction, Room, choose_eviction

log = logging.getLogger(__name__)


class Lease:
    """A request's hold on a loaded model; ``release()`` (idempotent) when its answer is done."""

    def __init__(self, lifecycle: Lifecycle, entry: Entry) -> None:
        self._lifecycle = lifecycle
        self._entry = entry
        self.released = False

    @property
    def model(self) -> str:
        return self._entry.model

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._lifecycle._release(self._entry)


class Lifecycle:
    """The models of one gateway: loads them on demand and hands out ``Lease``s; one per gateway."""

    def __init__(
        self,
        engines: Engines,
        policy: Policy,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.engines = engines
        self.policy = policy
        self._on_change = on_change
        self._clock = clock
        self._waiting = 0
        self._room = Room()
        self._tasks: set[asyncio.Task[None]] = set()
        self._residents = Residents(engines, policy, clock=clock, wall=wall, spawn=self._spawn, changed=self._signal)
        self._entries = self._residents.entries  # read here, changed through the residents

    # ------------------------------------------------------------- queries
    def state(self, model: str) -> ModelState | None:
        entry = self._entries.get(model)
        return entry.state if entry is not None else None

    def models(self) -> list[ModelView]:
        return [
            ModelView(e.model, e.state, e.active, e.waiting, self._residents.keep_alive(e), e.until, e.error)
            for e in self._entries.values()
        ]

    def busy(self, model: str) -> bool:
        entry = self._entries.get(model)
        return entry is not None and self._residents.busy(entry)

    def held(self) -> list[str]:
        """Models holding room now (loaded or asleep), in load order: what a restart should restore."""
        return [e.model for e in self._entries.values() if e.holds_room and e.state in ("loaded", "asleep")]

    # ------------------------------------------------------------- models the supervisor changed itself
    def track(self, model: str) -> None:
        """Account for a model the pool already holds (loaded outside the lifecycle)."""
        if model not in self._entries:
            entry = self._entries[model] = Entry(model, state="loaded", holds_room=True, last_used=self._clock())
            self._residents.settle(entry)

    def adopt(self, model: str, work: Awaitable[None]) -> asyncio.Task[None]:
        """``model`` is being loaded by ``work`` (a hot swap); requests for it wait for that."""
        entry = self._residents.entry(model)
        if entry.load is not None and not entry.load.done():
            entry.load.cancel()
        entry.state, entry.error = "loading", None
        self._residents.cancel_timer(entry)
        entry.load = self._spawn(self._adopt(entry, work), f"swap-{model}")
        return entry.load

    async def _adopt(self, entry: Entry, work: Awaitable[None]) -> None:
        try:
            async with entry.lock:
                try:
                    await work
                except LLFError as exc:
                    entry.holds_room = self.engines.has(entry.model)
                    if entry.holds_room:  # failed replicas stay, with their log, for the status
                        entry.state, entry.error = "failed", exc.detail
                    raise
                entry.holds_room = True
                entry.state = "loaded"
                entry.last_used = self._clock()
        finally:
            if entry.load is asyncio.current_task():  # not a later load that replaced this one
                entry.load = None
            self._residents.settle(entry)

    def dropped(self, model: str) -> None:
        """The pool no longer holds ``model`` (swapped out, or stopped by the supervisor)."""
        entry = self._entries.get(model)
        if entry is None or entry.state == "unloading" or entry.load is not None:
            return  # the lifecycle's own stop or load is in charge of it
        entry.holds_room = False
        entry.state = "unloading"
        self._residents.forget(entry)

    # ------------------------------------------------------------- requests
    async def acquire(self, model: str, keep_alive: KeepAlive | Unset = UNSET) -> Lease:
        """Hold ``model`` loaded for one request, loading or waking it first if needed."""
        while True:
            entry = self._entries.get(model)
            if entry is not None and entry.state == "loaded" and entry.load is None:
                break
            await self.ensure_loaded(model)
        entry.active += 1
        entry.last_used = self._clock()
        if not isinstance(keep_alive, Unset):
            entry.keep_alive = keep_alive
        self._residents.cancel_timer(entry)
        return Lease(self, entry)

    async def ensure_loaded(self, model: str) -> None:
        """Until ``model`` is loaded and awake; one load per model, shared by every caller."""
        entry = self._entries.get(model)
        if entry is not None and entry.state == "loaded" and entry.load is None:
            return
        if self._waiting >= self.policy.max_waiting_requests:
            raise Unavailable(
                f"{self._waiting} requests are already waiting for a model to load "
                f"(max_waiting_requests); retry shortly",
                retry_after=self.policy.retry_after_s,
            )
        entry = self._residents.entry(model)
        entry.waiting += 1
        self._waiting += 1
        self._residents.cancel_timer(entry)
        try:
            task = self._load_task(entry)
            async with asyncio.timeout(self.policy.load_timeout_s) as deadline:
                try:
                    await asyncio.shield(task)
                except asyncio.CancelledError:
                    if task.cancelled() and not deadline.expired():
                        raise Unavailable(f"the load of {model} was cancelled; retry", retry_after=1) from None
                    raise
        except TimeoutError:
            raise Unavailable(
                f"{model} is still loading after {self.policy.load_timeout_s:g} s (load_timeout_s); retry shortly",
                retry_after=self.policy.retry_after_s,
            ) from None
        finally:
            entry.waiting -= 1
            self._waiting -= 1
            self._residents.settle(entry)

    def load(self, model: str) -> asyncio.Task[None] | None:
        """Start loading ``model`` unless it is loaded (``llf serve``); None, or the load to await."""
        entry = self._residents.entry(model)
        if entry.state == "loaded" and entry.load is None:
            return None
        return self._load_task(entry)

    async def unload(self, model: str) -> bool:
        """Drain and unload ``model`` now (``llf stop``); False if it was not loaded."""
        entry = self._entries.get(model)
        if entry is None:
            return False
        if entry.load is not None:
            entry.load.cancel()
            with contextlib.suppress(asyncio.CancelledError, LLFError):
                await entry.load
        await self._residents.stop(entry)
        return True

    async def close(self) -> None:
        """Cancel timers and background work (the gateway is exiting; the supervisor stops engines)."""
        for entry in self._entries.values():
            self._residents.cancel_timer(entry)
            if entry.load is not None:
                entry.load.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *(e.load for e in self._entries.values() if e.load), return_exceptions=True)

    # ------------------------------------------------------------- internals
    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _load_task(self, entry: Entry) -> asyncio.Task[None]:
        if entry.load is None or entry.load.done():
            entry.load = self._spawn(self._load(entry), f"load-{entry.model}")
        return entry.load

    async def _load(self, entry: Entry) -> None:
        try:
            async with entry.lock:  # after an unload of this model in progress
                if entry.state == "loaded":
                    return
                waking = entry.state == "asleep"
                if entry.state == "failed":
                    await self.engines.stop(entry.model)
                    entry.holds_room = False
                entry.state, entry.error = "loading", None
                await self._admit(entry, waking)
                log.info("model loading", extra={"model": entry.model, "wake": waking})
                if waking:
                    await self.engines.wake(entry.model)
                else:
                    await self.engines.wait_ready(entry.model)
                entry.state = "loaded"
                entry.last_used = self._clock()
                log.info("model loaded", extra={"model": entry.model})
        except LLFError as exc:
            if entry.holds_room:  # the engine failed: its replicas stay, with their log, for the status
                entry.state, entry.error = "failed", exc.detail
            raise
        except BaseException:
            if entry.holds_room:
                await asyncio.shield(self._residents.stop_engines(entry))
            raise
        finally:
            if entry.load is asyncio.current_task():  # not a later load that replaced this one
                entry.load = None
            self._residents.settle(entry)

    async def _admit(self, entry: Entry, waking: bool) -> None:
        """Make room for ``entry`` (evicting idle models) and take it, waiting while all are busy."""
        alone = None if waking else self.engines.fits_alone(entry.model)
        if alone is not None:  # evicting others cannot help: refuse before anything is unloaded
            raise DoesNotFit(f"cannot load {entry.model}: {alone}")

        async def attempt() -> str | None:
            reason = await self._make_room(entry, waking)
            if reason is None:
                if not waking:
                    self.engines.start(entry.model)
                entry.holds_room = True
                return None
            if not any(e is not entry and e.holds_room for e in self._entries.values()):
                raise DoesNotFit(f"cannot load {entry.model}: {reason}")
            log.info("model waits for room", extra={"model": entry.model, "reason": reason})
            return reason

        await self._room.admit(entry.model, attempt, self.policy)

    async def _make_room(self, entry: Entry, waking: bool) -> str | None:
        """Evict idle models until ``entry`` fits; the reason it does not when no idle model is left."""
        while True:
            holders = [e for e in self._entries.values() if e is not entry and e.holds_room]
            choice = choose_eviction(
                entry, holders, engines=self.engines, policy=self.policy, busy=self._residents.busy, waking=waking
            )
            if not isinstance(choice, Eviction):
                return choice
            victim = choice.victim
            log.info("evicting idle model", extra={"model": victim.model, "for": entry.model, "reason": choice.reason})
            if choice.sleep:
                await self._residents.sleep(victim)  # device memory is what is short: sleeping frees it
            else:
                await self._residents.stop(victim)

    def _release(self, entry: Entry) -> None:
        entry.active -= 1
        entry.last_used = self._clock()
        self._residents.settle(entry)

    def _signal(self) -> None:
        """Something freed room or became idle: loads waiting for room look again."""
        self._room.changed()
        if self._on_change is not None:
            self._on_change()
