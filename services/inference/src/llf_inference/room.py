"""Room for a load: which idle model gives its room up, and the queue of loads waiting for room.

A model that does not fit (``max_loaded_models`` reached, or the placement says no) gets the
room of the least recently used *idle* model, a failed one first. A model with requests in
flight, or waiting for its load, is never evicted: the load waits until a model becomes idle,
bounded by ``load_timeout_s`` (then ``NoRoom``, a 503 with Retry-After). Loads make room one at
a time, so two never count the same free room; each waiting load looks again whenever room may
have been freed. ``lifecycle.py`` does the evicting (sleep or stop) and the starting; this module
decides and waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from llf_common.errors import Unavailable

from llf_inference.model_state import Engines, Entry, Policy


class NoRoom(Unavailable):
    """Every model holding room stayed busy; retrying later can succeed (unlike ``DoesNotFit``).

    ``DoesNotFit`` (507) is raised when the model cannot be placed even with nothing else
    loaded: waiting cannot help there.
    """


@dataclass(frozen=True)
class Eviction:
    """The idle model to move out for a load; ``sleep`` when sleeping it frees what is short."""

    victim: Entry
    sleep: bool
    reason: str


def choose_eviction(
    entry: Entry,
    holders: Sequence[Entry],
    *,
    engines: Engines,
    policy: Policy,
    busy: Callable[[Entry], bool],
    waking: bool,
) -> Eviction | str | None:
    """None when ``entry`` fits beside ``holders`` now; else the idle holder to evict, or why nothing can go.

    A cap (``max_loaded_models``) counts models, so only a stop frees a place under it; device
    memory is freed by a sleep too, so a loaded victim that can sleep is slept instead.
    """
    cap = policy.max_loaded_models
    by_cap = not waking and cap is not None and len(holders) >= cap
    reason = f"max_loaded_models={cap} are loaded" if by_cap else engines.place(entry.model)
    if reason is None:
        return None
    idle = [e for e in holders if e.state in ("loaded", "asleep", "failed") and not busy(e)]
    if not idle:
        in_use = ", ".join(sorted(e.model for e in holders))
        return f"{reason}; in use: {in_use}" if in_use else reason
    victim = min(idle, key=lambda e: (e.state != "failed", e.last_used))
    sleep = not by_cap and victim.state == "loaded" and engines.can_sleep(victim.model)
    return Eviction(victim, sleep, reason)


class Room:
    """Loads waiting for room, let in one at a time; ``changed()`` makes every waiting load look again."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._waiters: set[asyncio.Event] = set()

    def changed(self) -> None:
        """Something freed room or became idle."""
        for changed in self._waiters:
            changed.set()

    async def admit(self, model: str, attempt: Callable[[], Awaitable[str | None]], policy: Policy) -> None:
        """Run ``attempt()`` alone until it returns None (``model`` is in), waiting for a change between tries.

        ``attempt`` returns why ``model`` does not fit yet, or raises to give up. ``NoRoom`` when
        ``policy.load_timeout_s`` passes first, naming the last reason.
        """
        reason = "no room"
        try:
            async with asyncio.timeout(policy.load_timeout_s):
                while True:
                    changed = asyncio.Event()
                    self._waiters.add(changed)  # before trying: a change made meanwhile is not missed
                    try:
                        async with self._lock:
                            found = await attempt()
                            if found is None:
                                return
                            reason = found
                        await changed.wait()
                    finally:
                        self._waiters.discard(changed)
        except TimeoutError:
            raise NoRoom(
                f"no room for {model} within {policy.load_timeout_s:g} s: {reason}; retry later",
                retry_after=policy.retry_after_s,
            ) from None
