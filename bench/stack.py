"""The servers benchmarks share, started once per run through the test harness's own helpers.

Reusing ``tests/support`` (the same Redis, hub stand-in, registry and gateway runners the
integration tests use) means a benchmark measures exactly what the tests exercise, and that
there is one way to start each service in this repo. The dependency goes one way only:
``bench`` imports ``tests.support``; nothing under ``tests/`` imports ``bench``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from bench.context import Context


def redis(ctx: Context) -> Any:
    """A real redis-server (AOF) on a free port."""

    def start(stack: contextlib.ExitStack) -> Any:
        from tests.support.redis_server import RedisServer

        server = RedisServer(ctx.path("redis"))
        server.start()
        stack.callback(server.stop)
        return server

    return ctx.shared("redis", start)


def hub(ctx: Context) -> Any:
    """The Hugging Face Hub stand-in (``tests.support.hub.HubStandIn``), started."""

    def start(stack: contextlib.ExitStack) -> Any:
        from tests.support.hub import HubStandIn

        server = HubStandIn(ctx.path("hub"))
        server.start()
        stack.callback(server.stop)
        return server

    return ctx.shared("hub", start)


def add_tiny_model(hub_server: Any, repo: str, seed: int = 0) -> None:
    """Publish the generated tiny model as ``repo`` on the hub stand-in (once)."""
    if repo not in getattr(hub_server, "_bench_repos", set()):
        hub_server.add_tiny_model(repo, seed=seed)
        hub_server._bench_repos = {*getattr(hub_server, "_bench_repos", set()), repo}


def registry(ctx: Context) -> Any:
    """Registry API + one worker on the shared Redis and hub (``tests.support.registry``)."""

    def start(stack: contextlib.ExitStack) -> Any:
        from tests.support.registry import RegistryStack

        server = RegistryStack(ctx.path("registry"), redis_url=redis(ctx).url, hf_endpoint=hub(ctx).url,
                               env={"LLF_LOG_LEVEL": "WARNING"})
        stack.callback(server.stop)
        server.start_api()
        server.start_worker()
        return server

    return ctx.shared("registry", start)


def worker_pid(ctx: Context) -> int | None:
    """The registry worker's pid (py-spy follows its work horses with ``--subprocesses``)."""
    workers = registry(ctx).workers
    return int(workers[0].pid) if workers else None


def models_dir(ctx: Context) -> Path:
    return Path(registry(ctx).models_dir)
