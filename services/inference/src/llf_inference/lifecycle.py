"""The model lifecycle: which models are loaded, when one is loaded, slept or unloaded.

The pool holds replicas of several models; this module decides, the supervisor acts (it
stays the only place that adds or removes a replica, reached through ``Engines``). The
guarantees:

* **Load on demand, once.** A request for a model that is not loaded starts its load and
  waits for it; concurrent requests for the same model wait for the same load. A wait is
  bounded by ``load_timeout_s`` (then 503 + Retry-After), and at most
  ``max_waiting_requests`` requests wait at a time (beyond: 503 + Retry-After).
* **Room is made, never stolen.** A model that does not fit (``max_loaded_models``
  reached, or the placement says no) gets the room of the least recently used *idle*
  model. A model with requests in flight, or waiting for its load, is never evicted: the
  load waits until a model becomes idle (bounded as above). Each load therefore serves the
  requests that queued for it before its model can be evicted again, so two clients taking
  turns on two models with a one-model budget swap once per turn, never in a loop.
* **Idle unload.** Once a model has nothing in flight, it is unloaded after its
  ``keep_alive`` (the last request's, else the configured one); ``None`` waits until its
  room is needed, ``0`` unloads at once. Where the engine can sleep (vLLM sleep mode on a
  GPU), an idle model is put to sleep instead and woken by its next request.

What the supervisor does on its own is reported here too: a hot swap (``adopt``: requests
for the incoming model wait for the swap instead of starting a load of their own), replicas
added directly (``track``) and a model it removed (``dropped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from llf_common.errors import LLFError, Unavailable

from llf_inference.keepalive import UNSET, KeepAlive, Unset, describe
from llf_inference.placement import DoesNotFit

log = logging.getLogger(__name__)

ModelState = Literal["loading", "loaded", "asleep", "unloading", "failed"]


class Engines(Protocol):
    """What the lifecycle needs from the supervisor (a fake in unit tests)."""

    def place(self, model: str) -> str | None:
        """None if ``model``'s replicas fit on what is free now (or it wakes), else why not, in one line."""

    def fits_alone(self, model: str) -> str | None:
        """None if ``model``'s replicas would fit with no other model loaded, else why not, in one line."""

    def start(self, model: str) -> None:
        """Add ``model``'s replicas where ``place`` found room, and start them (taken at once)."""

    async def wait_ready(self, model: str) -> None:
        """Until ``model`` answers; raises ``LLFError`` (with the engine's reason) if it failed."""

    async def stop(self, model: str) -> None:
        """Drain and stop every replica of ``model``; its room is free afterwards."""

    def in_flight(self, model: str) -> int:
        """Requests the replicas of ``model`` are answering now."""

    def has(self, model: str) -> bool:
        """Whether the pool holds replicas of ``model`` (in any state)."""

    def can_sleep(self, model: str) -> bool:
        """Whether ``model``'s engines can sleep (vLLM ``--enable-sleep-mode`` on a GPU)."""

    async def sleep(self, model: str) -> None:
        """Put ``model``'s engines to sleep (level 1: weights to host RAM, device memory freed)."""

    async def wake(self, model: str) -> None:
        """Wake ``model``'s engines; it answers afterwards."""


class NoRoom(Unavailable):
    """Every model holding room stayed busy; retrying later can succeed (unlike ``DoesNotFit``).

    ``DoesNotFit`` (507) is raised when the model cannot be placed even with nothing else
    loaded: waiting cannot help there.
    """


@dataclass(frozen=True)
class Policy:
    max_loaded_models: int | None = None
    max_waiting_requests: int = 256
    load_timeout_s: float = 300.0
    retry_after_s: int = 2
    keep_alive: KeepAlive = None
    keep_alive_overrides: Mapping[str, KeepAlive] = field(default_factory=dict)

    def keep_alive_for(self, model: str) -> KeepAlive:
        return self.keep_alive_overrides.get(model, self.keep_alive)


@dataclass(frozen=True)
class ModelView:
    """One model's lifecycle state for ``/v1/status`` (``until``: wall-clock unload time, if any)."""

    model: str
    state: ModelState
    in_flight: int
    waiting: int
    keep_alive: KeepAlive
    until: float | None
    error: str | None


@dataclass(eq=False)
class _Entry:
    model: str
    state: ModelState = "loading"
    holds_room: bool = False
    waiting: int = 0
    active: int = 0
    last_used: float = 0.0
    keep_alive: KeepAlive | Unset = UNSET
    until: float | None = None
    error: str | None = None
    load: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Lease:
    """A request's hold on a loaded model; ``release()`` (idempotent) when its answer is done."""

    def __init__(self, lifecycle: Lifecycle, entry: _Entry) -> None:
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
        self._wall = wall
        self._entries: dict[str, _Entry] = {}
        self._waiting = 0
        self._room = asyncio.Lock()
        self._room_waiters: set[asyncio.Event] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------- queries
    def state(self, model: str) -> ModelState | None:
        entry = self._entries.get(model)
        return entry.state if entry is not None else None

    def models(self) -> list[ModelView]:
        return [
            ModelView(e.model, e.state, e.active, e.waiting, self._keep_alive(e), e.until, e.error)
            for e in self._entries.values()
        ]

    def busy(self, model: str) -> bool:
        entry = self._entries.get(model)
        return entry is not None and self._busy(entry)

    def held(self) -> list[str]:
        """Models holding room now (loaded or asleep), in load order: what a restart should restore."""
        return [e.model for e in self._entries.values() if e.holds_room and e.state in ("loaded", "asleep")]

    # ------------------------------------------------------------- models the supervisor changed itself
    def track(self, model: str) -> None:
        """Account for a model the pool already holds (loaded outside the lifecycle)."""
        if model not in self._entries:
            entry = self._entries[model] = _Entry(model, state="loaded", holds_room=True, last_used=self._clock())
            self._settle(entry)

    def adopt(self, model: str, work: Awaitable[None]) -> asyncio.Task[None]:
        """``model`` is being loaded by ``work`` (a hot swap); requests for it wait for that."""
        entry = self._entry(model)
        if entry.load is not None and not entry.load.done():
            entry.load.cancel()
        entry.state, entry.error = "loading", None
        self._cancel_timer(entry)
        entry.load = self._spawn(self._adopt(entry, work), f"swap-{model}")
        return entry.load

    async def _adopt(self, entry: _Entry, work: Awaitable[None]) -> None:
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
            self._settle(entry)

    def dropped(self, model: str) -> None:
        """The pool no longer holds ``model`` (swapped out, or stopped by the supervisor)."""
        entry = self._entries.get(model)
        if entry is None or entry.state == "unloading" or entry.load is not None:
            return  # the lifecycle's own stop or load is in charge of it
        entry.holds_room = False
        entry.state = "unloading"
        self._forget(entry)

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
        self._cancel_timer(entry)
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
        entry = self._entry(model)
        entry.waiting += 1
        self._waiting += 1
        self._cancel_timer(entry)
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
            self._settle(entry)

    def load(self, model: str) -> asyncio.Task[None] | None:
        """Start loading ``model`` unless it is loaded (``llf serve``); None, or the load to await."""
        entry = self._entry(model)
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
        await self._stop(entry)
        return True

    async def close(self) -> None:
        """Cancel timers and background work (the gateway is exiting; the supervisor stops engines)."""
        for entry in self._entries.values():
            self._cancel_timer(entry)
            if entry.load is not None:
                entry.load.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *(e.load for e in self._entries.values() if e.load), return_exceptions=True)

    # ------------------------------------------------------------- internals
    def _entry(self, model: str) -> _Entry:
        entry = self._entries.get(model)
        if entry is None:
            entry = self._entries[model] = _Entry(model, last_used=self._clock())
        return entry

    def _keep_alive(self, entry: _Entry) -> KeepAlive:
        if isinstance(entry.keep_alive, Unset):
            return self.policy.keep_alive_for(entry.model)
        return entry.keep_alive

    def _busy(self, entry: _Entry) -> bool:
        return entry.active > 0 or entry.waiting > 0 or self.engines.in_flight(entry.model) > 0

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _load_task(self, entry: _Entry) -> asyncio.Task[None]:
        if entry.load is None or entry.load.done():
            entry.load = self._spawn(self._load(entry), f"load-{entry.model}")
        return entry.load

    async def _load(self, entry: _Entry) -> None:
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
                await asyncio.shield(self._stop_engines(entry))
            raise
        finally:
            if entry.load is asyncio.current_task():  # not a later load that replaced this one
                entry.load = None
            self._settle(entry)

    async def _admit(self, entry: _Entry, waking: bool) -> None:
        """Make room for ``entry`` (evicting idle models) and take it, waiting while all are busy."""
        reason = "no room"
        alone = None if waking else self.engines.fits_alone(entry.model)
        if alone is not None:  # evicting others cannot help: refuse before anything is unloaded
            raise DoesNotFit(f"cannot load {entry.model}: {alone}")
        try:
            async with asyncio.timeout(self.policy.load_timeout_s):
                while True:
                    changed = asyncio.Event()
                    self._room_waiters.add(changed)
                    try:
                        async with self._room:
                            found = await self._make_room(entry, waking)
                            if found is None:
                                if not waking:
                                    self.engines.start(entry.model)
                                entry.holds_room = True
                                return
                            reason = found
                            if not any(e is not entry and e.holds_room for e in self._entries.values()):
                                raise DoesNotFit(f"cannot load {entry.model}: {reason}")
                        log.info("model waits for room", extra={"model": entry.model, "reason": reason})
                        await changed.wait()
                    finally:
                        self._room_waiters.discard(changed)
        except TimeoutError:
            raise NoRoom(
                f"no room for {entry.model} within {self.policy.load_timeout_s:g} s: {reason}; retry later",
                retry_after=self.policy.retry_after_s,
            ) from None

    async def _make_room(self, entry: _Entry, waking: bool) -> str | None:
        """Evict idle models until ``entry`` fits; the reason it does not when no idle model is left."""
        while True:
            holders = [e for e in self._entries.values() if e is not entry and e.holds_room]
            cap = self.policy.max_loaded_models
            by_cap = not waking and cap is not None and len(holders) >= cap
            reason = f"max_loaded_models={cap} are loaded" if by_cap else self.engines.place(entry.model)
            if reason is None:
                return None
            idle = [e for e in holders if e.state in ("loaded", "asleep", "failed") and not self._busy(e)]
            if not idle:
                busy = ", ".join(sorted(e.model for e in holders))
                return f"{reason}; in use: {busy}" if busy else reason
            victim = min(idle, key=lambda e: (e.state != "failed", e.last_used))
            log.info("evicting idle model", extra={"model": victim.model, "for": entry.model, "reason": reason})
            if not by_cap and victim.state == "loaded" and self.engines.can_sleep(victim.model):
                await self._sleep(victim)  # device memory is what is short: sleeping frees it
            else:
                await self._stop(victim)

    def _release(self, entry: _Entry) -> None:
        entry.active -= 1
        entry.last_used = self._clock()
        self._settle(entry)

    def _settle(self, entry: _Entry) -> None:
        """After a request or load ends: schedule the idle unload, forget a dropped entry, wake waiters."""
        self._signal()
        if self._busy(entry) or entry.load is not None:
            return
        if not entry.holds_room and entry.state != "failed":
            self._forget(entry)
            return
        if entry.state != "loaded":
            return
        keep_alive = self._keep_alive(entry)
        self._cancel_timer(entry)
        if keep_alive is None:
            return
        entry.until = self._wall() + keep_alive
        loop = asyncio.get_running_loop()
        entry.timer = loop.call_later(keep_alive, self._expire, entry)

    def _expire(self, entry: _Entry) -> None:
        entry.timer = None
        entry.until = None
        if self._entries.get(entry.model) is entry and entry.state == "loaded" and not self._busy(entry):
            idle = self._sleep if self.engines.can_sleep(entry.model) else self._stop
            self._spawn(idle(entry), f"idle-{entry.model}")

    async def _sleep(self, entry: _Entry) -> None:
        entry.state = "unloading"  # from now on a request waits for it to wake again
        async with entry.lock:
            self._cancel_timer(entry)
            log.info("model sleeping", extra={"model": entry.model, "keep_alive": describe(self._keep_alive(entry))})
            try:
                await self.engines.sleep(entry.model)
            except LLFError as exc:
                log.warning("sleep failed; unloading instead", extra={"model": entry.model, "reason": exc.detail})
                await self._stop_engines(entry)
                self._forget(entry)
                return
            entry.state = "asleep"
        self._signal()

    async def _stop(self, entry: _Entry) -> None:
        entry.state = "unloading"
        async with entry.lock:
            self._cancel_timer(entry)
            log.info("model unloading", extra={"model": entry.model})
            await self._stop_engines(entry)
            if not self._busy(entry):
                self._forget(entry)
        self._signal()

    async def _stop_engines(self, entry: _Entry) -> None:
        try:
            await self.engines.stop(entry.model)
        finally:
            entry.holds_room = False

    def _forget(self, entry: _Entry) -> None:
        self._cancel_timer(entry)
        if self._entries.get(entry.model) is entry and not self._busy(entry) and entry.load is None:
            del self._entries[entry.model]
        self._signal()

    def _cancel_timer(self, entry: _Entry) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        entry.until = None

    def _signal(self) -> None:
        """Something freed room or became idle: loads waiting for room look again."""
        for changed in self._room_waiters:
            changed.set()
        if self._on_change is not None:
            self._on_change()
