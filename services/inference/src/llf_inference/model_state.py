"""What the lifecycle keeps per model, what it shows of it, and what it needs from the supervisor.

The vocabulary shared by ``lifecycle.py`` (which decides when a model is loaded, slept or
unloaded) and ``room.py`` (which decides which idle model makes room for a load): the model
states, the ``Policy`` knobs, one ``Entry`` per model the lifecycle knows of, the ``ModelView``
that ``/v1/status`` shows, and ``Engines``, the supervisor's side (a fake in unit tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from llf_inference.keepalive import UNSET, KeepAlive, Unset

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
class Entry:
    """One model the lifecycle knows of; ``holds_room`` while its replicas take devices (loaded, asleep, failed)."""

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
