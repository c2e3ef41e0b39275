"""The models the lifecycle holds, and how each one leaves: idle unload, sleep, stop.

One ``Entry`` per model, by name, in the order it was first asked for. Once a model has
nothing in flight it is unloaded after its ``keep_alive`` (the last request's, else the
configured one); ``None`` waits until its room is needed, ``0`` unloads at once. Where the
engine can sleep (vLLM sleep mode on a GPU), an idle model is put to sleep instead and woken by
its next request. Whatever may have freed room or ended a request is reported (``changed``),
so loads waiting for room look again. ``lifecycle.py`` loads models; this module keeps the
books and unloads them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from llf_common.errors import LLFError

from llf_inference.keepalive import KeepAlive, Unset, describe
from llf_inference.model_state import Engines, Entry, Policy

log = logging.getLogger("llf_inference.lifecycle")  # the lifecycle's story: one logger for its lines

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


class Residents:
    """The table of models (``entries``) and the transitions out of ``loaded``; the lifecycle owns one."""

    def __init__(
        self,
        engines: Engines,
        policy: Policy,
        *,
        clock: Callable[[], float],
        wall: Callable[[], float],
        spawn: Spawn,
        changed: Callable[[], None],
    ) -> None:
        self.engines = engines
        self.policy = policy
        self.entries: dict[str, Entry] = {}
        self._clock = clock
        self._wall = wall
        self._spawn = spawn
        self._changed = changed

    def entry(self, model: str) -> Entry:
        """``model``'s entry, made (state ``loading``, holding nothing) if there is none."""
        entry = self.entries.get(model)
        if entry is None:
            entry = self.entries[model] = Entry(model, last_used=self._clock())
        return entry

    def keep_alive(self, entry: Entry) -> KeepAlive:
        if isinstance(entry.keep_alive, Unset):
            return self.policy.keep_alive_for(entry.model)
        return entry.keep_alive

    def busy(self, entry: Entry) -> bool:
        return entry.active > 0 or entry.waiting > 0 or self.engines.in_flight(entry.model) > 0

    def settle(self, entry: Entry) -> None:
        """After a request or load ends: schedule the idle unload, forget a dropped entry, wake waiters."""
        self._changed()
        if self.busy(entry) or entry.load is not None:
            return
        if not entry.holds_room and entry.state != "failed":
            self.forget(entry)
            return
        if entry.state != "loaded":
            return
        keep_alive = self.keep_alive(entry)
        self.cancel_timer(entry)
        if keep_alive is None:
            return
        entry.until = self._wall() + keep_alive
        loop = asyncio.get_running_loop()
        entry.timer = loop.call_later(keep_alive, self._expire, entry)

    def _expire(self, entry: Entry) -> None:
        entry.timer = None
        entry.until = None
        if self.entries.get(entry.model) is entry and entry.state == "loaded" and not self.busy(entry):
            idle = self.sleep if self.engines.can_sleep(entry.model) else self.stop
            self._spawn(idle(entry), f"idle-{entry.model}")

    async def sleep(self, entry: Entry) -> None:
        entry.state = "unloading"  # from now on a request waits for it to wake again
        async with entry.lock:
            self.cancel_timer(entry)
            log.info("model sleeping", extra={"model": entry.model, "keep_alive": describe(self.keep_alive(entry))})
            try:
                await self.engines.sleep(entry.model)
            except LLFError as exc:
                log.warning("sleep failed; unloading instead", extra={"model": entry.model, "reason": exc.detail})
                await self.stop_engines(entry)
                self.forget(entry)
                return
            entry.state = "asleep"
        self._changed()

    async def stop(self, entry: Entry) -> None:
        entry.state = "unloading"
        async with entry.lock:
            self.cancel_timer(entry)
            log.info("model unloading", extra={"model": entry.model})
            await self.stop_engines(entry)
            if not self.busy(entry):
                self.forget(entry)
        self._changed()

    async def stop_engines(self, entry: Entry) -> None:
        try:
            await self.engines.stop(entry.model)
        finally:
            entry.holds_room = False

    def forget(self, entry: Entry) -> None:
        self.cancel_timer(entry)
        if self.entries.get(entry.model) is entry and not self.busy(entry) and entry.load is None:
            del self.entries[entry.model]
        self._changed()

    def cancel_timer(self, entry: Entry) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        entry.until = None
