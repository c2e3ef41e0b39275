"""Helpers of the gateway's unit tests: names, a model directory, the gateway under uvicorn in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from llf_inference.app import create_app
from llf_inference.settings import InferenceSettings

FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")
MODEL = "test/tiny"
OTHER = "test/other"


def model_dir(root: Path, name: str) -> Path:
    """A directory that passes the gateway's "is this a model" check (the fake engine loads nothing)."""
    directory = root / name.replace("/", "--")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    return directory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadedGateway:
    """The real app under uvicorn in a background thread, with a client bound to it."""

    def __init__(self, settings: InferenceSettings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
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
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    def call(self, coro_fn: Callable[[], Any]) -> Any:
        """Run a coroutine on the gateway's own loop (for poking at the supervisor)."""
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(30)

    def serve(self, model: str = MODEL, **body: Any) -> httpx.Response:
        return self.client.post("/v1/serve", json={"model": model, "wait": True, **body})

    def wait_state(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.client.get("/v1/status").json()
            if predicate(status):
                return status
            time.sleep(0.05)
        raise AssertionError(f"status never matched: {status}")
