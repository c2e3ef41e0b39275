"""The redis-server fixture is a real server whose acknowledged writes survive a SIGKILL."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import pytest
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


def test_a_client_without_the_password_is_refused(tmp_path: Path) -> None:
    """Whoever reaches the port but lacks the password cannot enqueue a job (or read anything)."""
    with RedisServer(tmp_path / "redis") as server:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(server.url_without_password).rpush("rq:queue:default", "job")
        with socket.create_connection((server.host, server.port), timeout=5) as raw:
            raw.sendall(b"*3\r\n$5\r\nRPUSH\r\n$16\r\nrq:queue:default\r\n$3\r\njob\r\n")
            assert raw.recv(200).startswith(b"-NOAUTH")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(server.url.replace(server.password, "wrong")).ping()
        assert redis.Redis.from_url(server.url).ping()
        command = " ".join(psutil.Process(server.pid).cmdline())
        assert server.password not in command  # on no visible command line (`ps`)
