"""The one ``free_port`` and the one ``wait_for`` of the test suite (and of the benchmarks).

Every wait in a test has a deadline and says what it waited for, so a hang fails with a sentence
instead of pytest's global timeout; these two helpers are the only way the suite does either.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out on ``host``; a server should bind it right away."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


Description = str | Callable[[], str]


def wait_for(predicate: Callable[[], T], timeout: float, what: Description, interval: float = 0.05) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Raises ``AssertionError("timed out after … waiting for <what>")`` at the deadline, so the
    failure names the condition; ``what`` may be a function, called only then, to add what the
    system looked like (a status, a log tail). The predicate is always called at least once, and
    once more at the deadline, so a slow last poll is not lost.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(timeout, what))
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


async def async_wait_for(
    predicate: Callable[[], T], timeout: float, what: Description, interval: float = 0.02
) -> T:
    """``wait_for`` for a test running in an event loop: polls without blocking the loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(timeout, what))
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def _timed_out(timeout: float, what: Description) -> str:
    return f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}"
