"""Real components for integration tests: redis-server, the hub stand-in, the tiny model, the engine venv.

Every server here is session-scoped (started once, on a free port, data under pytest's tmp
dirs) and stopped in ``finally``. Nothing is skipped when a component is missing: a missing
redis-server or engine venv is a broken set-up, and the test fails saying how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer

REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- redis
@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server (AOF on) for the session; tests may kill/restart it."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, running and empty (a previous test may have killed or filled it)."""
    if not redis_server.running:
        redis_server.start()
    redis_server.flushall()
    return redis_server.url
