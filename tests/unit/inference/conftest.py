"""Fixtures of the gateway's unit tests: clean settings over the fake engine, nothing started.

``make_settings`` builds settings whose engine command is the fake engine
(``tests/support/fake_engine.py``) and whose two models are pinned to local directories; a
unit test uses them to build a ``Gateway`` and ``create_app(settings, gateway)``, never to
start an engine (that is what ``tests/integration/inference/component`` does).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import uvloop

from tests.support.gateway_fixtures import MakeSettings, anyio_backend, clean_env, make_settings

__all__ = ["MakeSettings", "anyio_backend", "clean_env", "make_settings", "run", "short_dir"]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[object]], object]:
    """Runs a coroutine (10 s deadline) on each loop in turn: the gateway runs on uvloop (uvicorn's
    choice), whose transports differ from asyncio's."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def run(coro: Awaitable[object]) -> object:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(asyncio.wait_for(coro, 10))

    return run


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory short enough to hold engine socket directories (AF_UNIX paths: 107 bytes), whatever
    pytest's tmp_path is; removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="llf-test-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


