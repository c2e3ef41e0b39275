"""Fixtures of the gateway's component tests: the real app and real engine processes, fake engine.

These tests start processes and servers (the fake engine as the engine command, the gateway
under uvicorn in a thread), which is why they are integration tests; they take a second per
engine instead of vLLM's ~25 s, so they cover the process handling (process groups, log
capture, crash detection, restart, drain, disconnects) in depth. Every gateway started here
is stopped in ``finally``, with its engines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.fake_gateway import ThreadedGateway
from tests.support.gateway_fixtures import MakeSettings, anyio_backend, clean_env, make_settings

__all__ = ["MakeSettings", "anyio_backend", "clean_env", "make_settings"]


@pytest.fixture
def start_gateway(make_settings: MakeSettings) -> Iterator[Callable[..., ThreadedGateway]]:
    """Start the real app in a thread (``start(**settings_overrides)``); all of them stop at the end."""
    started: list[ThreadedGateway] = []

    def start(**overrides: Any) -> ThreadedGateway:
        gateway = ThreadedGateway(make_settings(**overrides))
        started.append(gateway)
        return gateway.start()

    try:
        yield start
    finally:
        errors = []
        for gateway in started:
            try:
                gateway.stop()
            except Exception as exc:  # stop the others anyway, then report
                errors.append(exc)
        if errors:
            raise errors[0]
