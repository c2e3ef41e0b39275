"""The redis-server fixture is a real server whose acknowledged writes survive a SIGKILL."""

from __future__ import annotations

from pathlib import Path

import redis

from tests.support.redis_server import RedisServer


def test_redis_url_is_a_running_empty_server(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    assert client.dbsize() == 0
    client.set("left-over", "1")


def test_redis_url_is_flushed_between_tests(redis_url: str) -> None:
    assert redis.Redis.from_url(redis_url).dbsize() == 0


def test_acknowledged_writes_survive_sigkill_and_restart_keeps_the_url(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        url = server.url
        client = redis.Redis.from_url(url)
        client.rpush("queue", "job-1", "job-2")
        server.kill()
        assert not server.running
        assert server.start() == url
        assert client.lrange("queue", 0, -1) == [b"job-1", b"job-2"]
        server.restart()
        assert server.url == url
        assert client.llen("queue") == 2
    assert not server.running
