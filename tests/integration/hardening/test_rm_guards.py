"""``rm`` never deletes a model that may be in use: by the gateway, or by a queued or running job.

A gateway that does not answer in time (a busy machine), answers 401/5xx or answers nonsense
may well be serving the model, so only a refused connection lets ``rm`` go ahead; ``--force``
overrides the doubt (never a gateway that says it uses the model).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.support.hub import HubStandIn
from tests.support.registry import RegistryStack

REPO = "llf-hardening/rm-guard"


@pytest.fixture
def silent_gateway() -> Iterator[str]:
    """A port that accepts connections and never answers (a gateway too busy to reply)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def status_server(status: int, body: bytes) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def stored(stack: RegistryStack) -> Path:
    """Something on disk for ``REPO`` (``rm`` needs a model or its files to exist)."""
    repo_dir = stack.models_dir / f"models--{REPO.replace('/', '--')}"
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    return repo_dir


def test_rm_answers_503_when_the_gateway_is_too_slow_to_say_and_force_overrides(
    silent_gateway: str, tmp_path: Path, redis_url: str, fresh_hub: HubStandIn
) -> None:
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url),
                       inference_url=silent_gateway) as stack:  # fmt: skip
        stack.start_api()
        repo_dir = stored(stack)
        start = time.monotonic()
        answer = httpx.delete(f"{stack.url}/v1/models/{REPO}", timeout=30)
        assert answer.status_code == 503, answer.text
        assert f"cannot confirm the gateway is not serving {REPO}" in answer.json()["detail"]
        assert time.monotonic() - start < 20, "the probe's own timeout bounds the answer"
        assert repo_dir.exists()
        forced = httpx.delete(f"{stack.url}/v1/models/{REPO}", params={"force": "true"}, timeout=30)
        assert forced.status_code == 204, forced.text
        assert not repo_dir.exists()


@pytest.mark.parametrize(
    ("status", "body"),
    [(401, b'{"detail": "missing or wrong API key"}'), (500, b"oops"), (200, b"<html>not a status</html>")],
    ids=["401", "500", "not-json"],
)
def test_rm_answers_503_when_the_gateway_answers_but_not_what_it_serves(
    status: int, body: bytes, tmp_path: Path, redis_url: str, fresh_hub: HubStandIn
) -> None:
    server, url = status_server(status, body)
    try:
        with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url),
                           inference_url=url) as stack:  # fmt: skip
            stack.start_api()
            repo_dir = stored(stack)
            answer = httpx.delete(f"{stack.url}/v1/models/{REPO}", timeout=30)
            assert answer.status_code == 503, answer.text
            assert repo_dir.exists()
    finally:
        server.shutdown()


def test_rm_refuses_a_model_the_gateway_has_asleep(tmp_path: Path, redis_url: str, fresh_hub: HubStandIn) -> None:
    body = (b'{"state": "ready", "models": [], "replicas": [{"id": "r1", "model": "%s", "state": "asleep"}]}'
            % REPO.encode())  # fmt: skip
    server, url = status_server(200, body)
    try:
        with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url),
                           inference_url=url) as stack:  # fmt: skip
            stack.start_api()
            repo_dir = stored(stack)
            for params in ({}, {"force": "true"}):
                answer = httpx.delete(f"{stack.url}/v1/models/{REPO}", params=params, timeout=30)
                assert answer.status_code == 409, answer.text
            assert repo_dir.exists()
    finally:
        server.shutdown()


def test_rm_goes_ahead_when_nothing_listens_where_the_gateway_would_be(
    tmp_path: Path, redis_url: str, fresh_hub: HubStandIn
) -> None:
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url)) as stack:
        stack.start_api()
        repo_dir = stored(stack)
        assert httpx.delete(f"{stack.url}/v1/models/{REPO}", timeout=30).status_code == 204
        assert not repo_dir.exists()
