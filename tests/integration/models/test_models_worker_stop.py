"""A worker asked to stop (SIGTERM: ``make down``, ``docker stop``) stops, instead of reconnecting.

The worker re-enters RQ's loop when that loop quits on a lost Redis; a requested stop must not
look like one (it did once: every idle worker then needed a SIGKILL after the stop timeout).
"""

from __future__ import annotations

import os
import signal
import subprocess

from tests.support.net import wait_for
from tests.support.registry import RegistryStack


def test_sigterm_stops_an_idle_worker_at_once_and_cleanly(stack: RegistryStack) -> None:
    worker = stack.start_worker()
    wait_for(  # in RQ's loop: its signal handlers are set
        lambda: "cleaning registries" in worker.log_path.read_text(errors="replace"),
        30,
        "the worker to enter RQ's loop",
    )
    os.kill(worker.pid, signal.SIGTERM)
    try:
        code = worker.process.wait(5)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker ignored SIGTERM for 5 s; log:\n{worker.log_tail()}") from None
    assert code == 0, worker.log_tail()
    assert "reconnect" not in worker.log_path.read_text(errors="replace")
