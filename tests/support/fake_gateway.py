"""The gateway over the fake engine: settings, model directories, and the real app in a thread.

``fake_engine_settings`` is what every gateway test below the real-vLLM integration tests
starts from: fast timings, ``tests/support/fake_engine.py`` as the engine command, and two
models pinned to local directories. ``ThreadedGateway`` runs the real app under uvicorn in a
background thread for the component tests that need real sockets and real engine processes
(unit tests use ``create_app(settings, gateway)`` over ``httpx.ASGITransport`` instead).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from llf_inference.app import create_app
from llf_inference.gateway import Gateway
from llf_inference.settings import InferenceSettings

from tests.support.net import free_port, wait_for

FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")
MODEL = "test/tiny"
OTHER = "test/other"


def model_dir(root: Path, name: str) -> Path:
    """A directory that passes the gateway's "is this a model" check (the fake engine loads nothing)."""
    directory = root / name.replace("/", "--")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    return directory


def fake_engine_settings(root: Path, **overrides: Any) -> InferenceSettings:
    """Settings with fast timings, the fake engine, and MODEL/OTHER pinned to directories under ``root``."""
    values: dict[str, Any] = {
        "home": root / "home",
        "device": "cpu",
        "engine_command": [sys.executable, str(FAKE_ENGINE)],
        "model_paths": {MODEL: str(model_dir(root, MODEL)), OTHER: str(model_dir(root, OTHER))},
        "engine_env": {},
        "readiness_timeout_s": 20.0,
        "health_interval_s": 0.05,
        "liveness_interval_s": 0.2,
        "liveness_failures": 2,
        "restart_backoff_s": 0.05,
        "restart_backoff_max_s": 0.2,
        "stop_timeout_s": 3.0,
        "drain_timeout_s": 2.0,
        "retry_after_s": 1,
    }
    values.update(overrides)
    return InferenceSettings(**values)


class ThreadedGateway:
    """The real app under uvicorn in a background thread, with a client bound to it."""

    def __init__(self, settings: InferenceSettings, gateway: Gateway | None = None) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, gateway)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"} if settings.api_key else {}
        self.client = httpx.Client(base_url=self.url, timeout=30, headers=headers)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve())
        finally:
            self.loop.close()

    def start(self) -> ThreadedGateway:
        self.thread.start()
        try:
            wait_for(lambda: self.server.started or not self.thread.is_alive(), 20, "the gateway thread to listen")
            if not self.thread.is_alive():
                raise RuntimeError("the gateway thread exited during start-up")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Shut uvicorn down (the lifespan stops every engine) and join the thread; safe to call twice."""
        self.client.close()
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(30)
        if self.thread.is_alive():
            raise RuntimeError("the gateway thread did not stop within 30 s")

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway

    def call(self, coro_fn: Callable[[], Any]) -> Any:
        """Run a coroutine on the gateway's own loop (for poking at the supervisor)."""
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(30)

    def serve(self, model: str = MODEL, **body: Any) -> httpx.Response:
        return self.client.post("/v1/serve", json={"model": model, "wait": True, **body})

    def wait_state(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        """Poll ``/v1/status`` until ``predicate`` holds; the last status is in the failure message."""
        seen: dict[str, Any] = {}

        def check() -> dict[str, Any] | None:
            seen.clear()
            seen.update(self.client.get("/v1/status").json())
            return dict(seen) if predicate(seen) else None

        try:
            return wait_for(check, timeout, "the gateway status to match")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last status: {seen}") from None
