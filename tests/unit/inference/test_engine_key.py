"""Each engine start gets a random key that only the gateway knows.

The engine listens on a socket only the gateway's user can open (``test_engine_address.py``);
the key is the second lock: with ``VLLM_API_KEY`` set, vLLM's OpenAI routes answer 401 to a
caller without it, should the engine ever be reachable (``engine_listen = "tcp"``). The key goes through the engine's
environment (readable only by its owner), never its argv (visible in ``ps``), and the
replica's client sends it on every call. No process is started here: ``subprocess.Popen`` and
the engine process are stand-ins.
"""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import pytest
from llf_inference import replica as replica_module
from llf_inference.engine import process as process_module
from llf_inference.engine.spec import EngineSpec
from llf_inference.replica import Replica

from tests.support.fake_gateway import MODEL
from tests.unit.inference.conftest import MakeSettings

pytestmark = pytest.mark.anyio

FAKE_PID = 2**22 + 12345  # above any pid_max in use: a stray killpg cannot hit a real group


class CapturedPopen:
    """What ``subprocess.Popen`` was given; an engine that exits at once."""

    calls: list[dict[str, Any]] = []

    def __init__(self, argv: list[str], **kwargs: Any) -> None:
        CapturedPopen.calls.append({"argv": argv, **kwargs})
        self.stdout = io.BytesIO(b"")
        self.pid = FAKE_PID
        self.returncode = 0

    def wait(self) -> int:
        return 0

    def poll(self) -> int:
        return 0


def test_the_key_reaches_the_engine_through_its_environment_not_its_argv(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    CapturedPopen.calls = []
    monkeypatch.setattr(process_module.subprocess, "Popen", CapturedPopen)
    spec = EngineSpec.from_settings(make_settings(), MODEL, "/models/tiny")
    try:
        process_module.EngineProcess(spec, 8123, api_key="s3cret-key")
    finally:
        process_module._LIVE_GROUPS.discard(FAKE_PID)
    (call,) = CapturedPopen.calls
    assert call["env"]["VLLM_API_KEY"] == "s3cret-key"
    assert not any("s3cret-key" in arg for arg in call["argv"])
    assert "--api-key" not in call["argv"]


class ExitedProcess:
    """An engine that is gone as soon as it started: the replica's first start ends at once."""

    keys: list[str | None] = []
    addresses: list[Any] = []

    def __init__(self, spec: Any, address: Any, *, api_key: str | None = None, **kwargs: Any) -> None:
        ExitedProcess.keys.append(api_key)
        ExitedProcess.addresses.append(address)
        self.pid = FAKE_PID
        self.alive = False
        self.popen = SimpleNamespace(poll=lambda: 1, returncode=1)

    def log_tail(self, lines: int | None = None) -> list[str]:
        return []


async def test_every_start_gets_a_new_key_and_the_client_sends_it(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ExitedProcess.keys, ExitedProcess.addresses = [], []
    monkeypatch.setattr(replica_module, "EngineProcess", ExitedProcess)
    settings = make_settings()
    replica = Replica("r0", EngineSpec.from_settings(settings, MODEL, "/models/tiny"), settings)
    sent = []
    try:
        for _ in range(2):
            await replica._run_once()
            assert replica.client is not None
            sent.append(replica.client.headers["authorization"])
            await replica.client.aclose()
    finally:
        for address in ExitedProcess.addresses:  # the socket directories a stopped engine would remove
            address.remove()
    first, second = ExitedProcess.keys
    assert first and second and first != second and len(first) >= 32
    assert sent == [f"Bearer {first}", f"Bearer {second}"]
