"""Ctrl-C while the CLI follows a job: recorded by a signal handler, acted on in one safe place.

Python's own SIGINT handling fails a follow in two ways:

* A process started with SIGINT ignored keeps ignoring it: Python installs no handler then, and
  ``fork``/``exec`` pass the ignore on. Anything started with ``&`` by a shell without job
  control inherits it (POSIX), so ``llf`` spawned on a terminal by such a process (a test run in
  the background driving ``llf pull`` on a pty) saw Ctrl-C do nothing while the bar went on.
* ``KeyboardInterrupt`` is raised wherever the main thread happens to be, which while following
  is inside httpx/httpcore/rich. Not every spot there survives it: httpcore's pool lock is taken
  by a Python ``__enter__`` (``ThreadLock`` in ``httpcore/_synchronization.py``), so an interrupt
  right after the acquire leaves it held and the pool's ``except BaseException`` clean-up blocks
  on it for ever; and clean-up that reads or closes a stream the server is holding waits for it.

So while a job is followed, SIGINT only sets a flag and wakes the main thread; the stream is read
by a daemon thread, and the main thread, which only waits on a queue, raises
``KeyboardInterrupt`` from a known place at once, leaving a blocked read behind.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")

TICK = 0.25
"""Longest a Ctrl-C waits to be seen when its signal woke a thread other than the main one."""

_ITEM, _RAISED, _END, _INTERRUPTED = "item", "raised", "end", "interrupted"


class Interrupt:
    """Whether Ctrl-C arrived; wakes the one :meth:`follow` in progress."""

    def __init__(self) -> None:
        self.hit = False
        self._wake: queue.SimpleQueue[tuple[str, Any]] | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The SIGINT handler: only a flag and ``SimpleQueue.put``, which is safe in a handler."""
        self.hit = True
        if self._wake is not None:
            self._wake.put((_INTERRUPTED, None))

    def follow(self, items: Iterator[T]) -> Iterator[T]:
        """``items``, read by a daemon thread; ``KeyboardInterrupt`` here as soon as ``hit`` is set.

        The thread's exceptions are raised here; once this generator is closed or interrupted the
        thread stops at the next item it gets, or ends with the process.
        """
        mailbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        abandoned = threading.Event()
        threading.Thread(target=_pump, args=(items, mailbox, abandoned), name="llf-follow", daemon=True).start()
        self._wake = mailbox
        try:
            while not self.hit:
                try:  # the tick: a SIGINT taken by another thread wakes no one; the next look sees it
                    kind, value = mailbox.get(timeout=TICK)
                except queue.Empty:
                    continue
                if kind == _ITEM:
                    yield value
                elif kind == _RAISED:
                    raise value
                elif kind == _END:
                    return
            raise KeyboardInterrupt
        finally:
            self._wake = None
            abandoned.set()


def _pump(items: Iterator[T], mailbox: queue.SimpleQueue[tuple[str, Any]], abandoned: threading.Event) -> None:
    try:
        for item in items:
            if abandoned.is_set():
                break
            mailbox.put((_ITEM, item))
        else:
            mailbox.put((_END, None))
    except BaseException as exc:  # handed to the main thread, which raises it
        mailbox.put((_RAISED, exc))
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            with suppress(Exception):  # nobody is listening any more
                close()


def _on_a_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # closed
        return False


@contextmanager
def deferred() -> Iterator[Interrupt]:
    """For the block, SIGINT sets ``Interrupt.hit`` instead of raising wherever the code is.

    An ignored SIGINT is taken over only when stdin is a terminal: a Ctrl-C typed there is meant
    for this process, while a background job of a shell (stdin ``/dev/null``) stays immune as
    POSIX intends. Off the main thread, or when the current handler was not set from Python, the
    handling is left alone.
    """
    interrupt = Interrupt()
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if previous is None or (previous == signal.SIG_IGN and not _on_a_terminal()):
        yield interrupt
        return
    signal.signal(signal.SIGINT, interrupt.handle)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, previous)
