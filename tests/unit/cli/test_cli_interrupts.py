"""Ctrl-C while following a job detaches at once, whatever the follow is doing at that instant.

The registry is faked at the level of ``Registry.follow``: its stream stops after the first
state, the way the hub stand-in holds a download, and the test process sends itself SIGINT
(what a terminal does on Ctrl-C) while the stream is held.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from llf_cli import flows, interrupts
from llf_cli.errors import EXIT_INTERRUPTED, CLIError, Detached

from tests.unit.cli.fakes import job_info

HOLD = 3.0
"""How long a held stream waits for the test to release it; far beyond any detach."""

Hold = Callable[[threading.Event], None]


def cleanup_waits_for_the_server(release: threading.Event) -> None:
    """The read is interrupted, but closing the response waits on the held stream."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        release.wait(HOLD)
    finally:
        release.wait(HOLD)


def code_that_swallows_interrupts(release: threading.Event) -> None:
    """A retry loop that catches ``BaseException`` around the blocking read."""
    deadline, sent = time.monotonic() + HOLD, False
    while not release.is_set() and time.monotonic() < deadline:
        try:
            if not sent:
                sent = True
                os.kill(os.getpid(), signal.SIGINT)
            release.wait(0.05)
        except BaseException:  # the fault this test is about
            continue


def ctrl_c_only(release: threading.Event) -> None:
    os.kill(os.getpid(), signal.SIGINT)
    release.wait(HOLD)


class HeldRegistry:
    """``Registry.follow`` that yields one state, lets ``hold`` send Ctrl-C and block, then ends the job."""

    def __init__(self, hold: Hold) -> None:
        self.hold = hold
        self.release = threading.Event()

    def follow(self, job_id: str, *, poll_interval: float, stream_timeout: float) -> Iterator[dict[str, Any]]:
        yield job_info("started", phase="download", done=10, job_id=job_id)
        self.hold(self.release)
        yield job_info("finished", job_id=job_id)


@pytest.fixture
def sigint() -> Iterator[None]:
    """Whatever a test does to SIGINT is undone, so no stray Ctrl-C reaches pytest."""
    before = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def follow(registry: HeldRegistry) -> tuple[dict[str, Any] | Detached, float]:
    state: Any = SimpleNamespace(registry=registry, settings=SimpleNamespace(poll_interval=0.01, stream_timeout=5.0))
    started = time.monotonic()
    try:
        return flows.follow_job(state, job_info("queued"), show=False), time.monotonic() - started
    except Detached as exc:
        return exc, time.monotonic() - started
    finally:
        registry.release.set()


@pytest.mark.parametrize("hold", [ctrl_c_only, cleanup_waits_for_the_server, code_that_swallows_interrupts])
def test_ctrl_c_detaches_at_once_while_the_stream_is_held(sigint: None, hold: Hold) -> None:
    before = signal.getsignal(signal.SIGINT)
    outcome, seconds = follow(HeldRegistry(hold))
    assert isinstance(outcome, Detached), outcome
    assert outcome.exit_code == EXIT_INTERRUPTED and "detached; job job-1 keeps running" in outcome.format_message()
    assert seconds < 1.5
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_on_its_own_terminal_detaches_even_if_sigint_was_inherited_ignored(
    sigint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parent started in the background (``&`` without job control) passes SIGINT ignored on."""
    monkeypatch.setattr(interrupts, "_on_a_terminal", lambda: True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    outcome, seconds = follow(HeldRegistry(ctrl_c_only))
    assert isinstance(outcome, Detached) and seconds < 1.5, outcome
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_an_ignored_sigint_stays_ignored_off_a_terminal(sigint: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell's background job (stdin not a terminal) keeps following, as POSIX intends."""
    monkeypatch.setattr(interrupts, "_on_a_terminal", lambda: False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    registry = HeldRegistry(ctrl_c_only)
    threading.Timer(0.3, registry.release.set).start()
    outcome, _ = follow(registry)
    assert isinstance(outcome, dict) and outcome["state"] == "finished", outcome


def test_a_follow_that_ends_returns_the_last_state_and_restores_the_handler(sigint: None) -> None:
    before = signal.getsignal(signal.SIGINT)
    registry = HeldRegistry(lambda release: None)
    outcome, _ = follow(registry)
    assert isinstance(outcome, dict) and outcome["state"] == "finished"
    assert signal.getsignal(signal.SIGINT) is before


def test_errors_of_the_follow_reach_the_caller(sigint: None) -> None:
    def unknown(release: threading.Event) -> None:
        raise CLIError("job job-1 not found", status=404)

    with pytest.raises(CLIError, match="not found"):
        follow(HeldRegistry(unknown))


def test_an_interrupted_follow_stops_reading_at_its_next_state() -> None:
    read: list[int] = []
    gate = threading.Event()

    def states() -> Iterator[int]:
        for n in range(3):
            read.append(n)
            yield n
            gate.wait(HOLD)

    interrupt = interrupts.Interrupt()
    follower = interrupt.follow(states())
    assert next(follower) == 0
    interrupt.handle(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt):
        next(follower)
    gate.set()
    deadline = time.monotonic() + HOLD
    while len(read) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert read == [0, 1]
