"""Each engine start listens on a Unix socket in a fresh 0700 directory, not on a TCP port.

vLLM checks its per-start key only on ``/v1``, ``/v2``, ``/inference`` and ``/cohere``; on a
loopback port any local user reaches ``/invocations``, ``/tokenize``, ``/metrics`` … So the
gateway starts each engine with ``--uds`` in a directory only its user can enter, and talks to
it over that socket. Nothing is started here: the argv, the directory, the client and the clean-up
are checked on stand-ins (the real engine is ``tests/integration/inference/test_gateway_openai.py``).
"""

from __future__ import annotations

import asyncio
import io
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from llf_inference import replica as replica_module
from llf_inference.engine import process as process_module
from llf_inference.engine.address import (
    DIR_PREFIX,
    SOCKET_NAME,
    SUN_PATH_MAX,
    EngineAddress,
    private_socket,
    socket_parents,
    socket_path_fits,
)
from llf_inference.engine.spec import EngineSpec
from llf_inference.replica import Replica
from llf_inference.settings import InferenceSettings

from tests.support.fake_gateway import MODEL
from tests.unit.inference.conftest import MakeSettings

pytestmark = pytest.mark.anyio

FAKE_PID = 2**22 + 23456  # above any pid_max in use: a stray killpg cannot hit a real group


def assert_private(directory: Path) -> None:
    info = directory.stat()
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700, oct(info.st_mode)
    assert info.st_uid == os.getuid()


def test_the_engine_listens_on_the_socket_and_names_no_host_or_port(make_settings: MakeSettings) -> None:
    spec = EngineSpec.from_settings(make_settings(), MODEL, "/models/tiny")
    argv = spec.command(EngineAddress(socket=Path("/run/llf/engines/llf-engine-ab12cd34/engine.sock")))
    assert argv[argv.index("--uds") + 1] == "/run/llf/engines/llf-engine-ab12cd34/engine.sock"
    assert "--host" not in argv and "--port" not in argv and "--disable-uvicorn-access-log" in argv


def test_a_tcp_address_is_a_loopback_port() -> None:
    address = EngineAddress(port=8123)
    assert address.argv == ["--host", "127.0.0.1", "--port", "8123"]
    assert address.base_url == "http://127.0.0.1:8123" and str(address) == "127.0.0.1:8123"
    allocated = EngineAddress.allocate("tcp", Path("/nonexistent"))
    assert allocated.socket is None and allocated.port and 0 < allocated.port < 65536
    with pytest.raises(ValueError):
        EngineAddress()
    with pytest.raises(ValueError):
        EngineAddress(socket=Path("/s"), port=1)


def test_each_start_gets_its_own_private_directory_under_the_run_dir(short_dir: Path) -> None:
    run = short_dir / "run"
    first = EngineAddress.allocate("unix", run)
    second = EngineAddress.allocate("unix", run)
    assert first.socket is not None and second.socket is not None
    assert first.socket.parent != second.socket.parent
    for address in (first, second):
        assert address.socket is not None
        assert address.socket.parent.parent == run / "engines"
        assert address.socket.name == SOCKET_NAME and address.socket.parent.name.startswith(DIR_PREFIX)
        assert_private(address.socket.parent)
        assert address.argv == ["--uds", str(address.socket)] and address.base_url == "http://engine"
        assert str(address) == f"unix:{address.socket}"
        address.remove()
    assert not list((run / "engines").iterdir())


def test_the_directory_is_0700_whatever_the_umask(short_dir: Path) -> None:
    old = os.umask(0o000)  # a umask that takes nothing away must not leave the directory open
    try:
        socket = private_socket([short_dir])
    finally:
        os.umask(old)
    assert_private(socket.parent)
    assert not socket.exists()  # vLLM binds it


def test_a_run_dir_too_long_for_af_unix_falls_back_to_a_short_private_temp_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    assert not socket_path_fits(deep / "run" / "engines")
    parents = socket_parents(deep / "run")
    assert parents[0] == deep / "run" / "engines" and Path("/tmp") in parents
    address = EngineAddress.allocate("unix", deep / "run")
    try:
        assert address.socket is not None
        assert len(os.fsencode(address.socket)) <= SUN_PATH_MAX
        assert not address.socket.is_relative_to(deep)
        assert address.socket.parent.name.startswith(DIR_PREFIX)
        assert_private(address.socket.parent)
        assert not (deep / "run" / "engines").exists()  # nothing was made where it could not be used
    finally:
        address.remove()
    assert not address.socket.parent.exists()


def test_a_path_of_exactly_the_limit_fits_and_one_byte_more_does_not() -> None:
    tail = len(f"/{DIR_PREFIX}xxxxxxxx/{SOCKET_NAME}")
    assert socket_path_fits(Path("/" + "p" * (SUN_PATH_MAX - tail - 1)))
    assert not socket_path_fits(Path("/" + "p" * (SUN_PATH_MAX - tail)))


def test_no_parent_short_enough_is_an_os_error_naming_the_limit() -> None:
    with pytest.raises(OSError, match="107 bytes"):
        private_socket([Path("/" + "p" * 120)])


def test_remove_deletes_the_socket_and_its_directory_and_can_be_repeated(short_dir: Path) -> None:
    socket = private_socket([short_dir])
    socket.write_bytes(b"")  # stands for the socket file vLLM leaves behind
    address = EngineAddress(socket=socket)
    address.remove()
    address.remove()
    assert not socket.parent.exists()
    kept = private_socket([short_dir])
    (kept.parent / "other").write_text("not ours to delete")
    EngineAddress(socket=kept).remove()
    assert (kept.parent / "other").exists()  # a directory with something else in it stays
    EngineAddress(port=1).remove()  # a port has nothing to remove


class StoppablePopen:
    """What ``subprocess.Popen`` was given; an engine that has exited already."""

    calls: list[dict[str, Any]] = []

    def __init__(self, argv: list[str], **kwargs: Any) -> None:
        StoppablePopen.calls.append({"argv": argv, **kwargs})
        self.stdout = io.BytesIO(b"")
        self.pid = FAKE_PID
        self.returncode = 0

    def wait(self, timeout: float | None = None) -> int:
        return 0

    def poll(self) -> int:
        return 0


def test_the_engine_process_gets_the_socket_and_stop_removes_it(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    StoppablePopen.calls = []
    monkeypatch.setattr(process_module.subprocess, "Popen", StoppablePopen)
    monkeypatch.setattr(process_module, "group_members", lambda pgid: [])
    address = EngineAddress(socket=private_socket([short_dir]))
    assert address.socket is not None
    try:
        engine = process_module.EngineProcess(EngineSpec.from_settings(make_settings(), MODEL, "/m"), address)
        (call,) = StoppablePopen.calls
        assert call["argv"][call["argv"].index("--uds") + 1] == str(address.socket)
        assert engine.address == address and engine.port is None
        address.socket.write_bytes(b"")
        engine.stop(timeout=0.1)
        assert not address.socket.parent.exists()
    finally:
        process_module._LIVE_GROUPS.discard(FAKE_PID)


class RecordingProcess:
    """An engine that is gone as soon as it started; records where it was told to listen."""

    addresses: list[EngineAddress] = []

    def __init__(self, spec: EngineSpec, address: EngineAddress, **kwargs: Any) -> None:
        RecordingProcess.addresses.append(address)
        self.pid = FAKE_PID
        self.alive = False

    def log_tail(self, lines: int | None = None) -> list[str]:
        return []


@pytest.mark.parametrize("listen", ["unix", "tcp"])
async def test_the_replicas_client_reaches_the_engine_where_it_listens(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch, short_dir: Path, listen: str
) -> None:
    RecordingProcess.addresses = []
    monkeypatch.setattr(replica_module, "EngineProcess", RecordingProcess)
    settings = make_settings(run_dir=short_dir / "run", engine_listen=listen)
    replica = Replica("r0", EngineSpec.from_settings(settings, MODEL, "/models/tiny"), settings)
    monkeypatch.setattr(replica, "_exit_failure", _exited)
    try:
        await replica._run_once()
        (address,) = RecordingProcess.addresses
        assert replica.client is not None
        assert replica.client._transport._connect == address.connect  # type: ignore[attr-defined]
        if listen == "unix":
            assert address.socket is not None and address.port is None
            assert str(replica.client.base_url) == "http://engine"
            assert_private(address.socket.parent)
        else:
            assert address.socket is None and address.port
            assert str(replica.client.base_url) == f"http://127.0.0.1:{address.port}"
    finally:
        if replica.client is not None:
            await replica.client.aclose()


async def _exited() -> Any:
    from llf_inference.engine.failure import Failure

    return Failure("exited", "gone", False)


def test_unix_is_the_default_and_tcp_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert InferenceSettings().engine_listen == "unix"
    monkeypatch.setenv("LLF_INFERENCE_ENGINE_LISTEN", "tcp")
    assert InferenceSettings().engine_listen == "tcp"


async def test_connect_opens_the_socket_and_ignores_the_urls_host(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    opened: list[tuple[str, ...]] = []

    async def unix(factory: Any, path: str) -> tuple[Any, Any]:
        opened.append(("unix", path))
        return None, factory()

    async def tcp(factory: Any, host: str, port: int) -> tuple[Any, Any]:
        opened.append(("tcp", host, str(port)))
        return None, factory()

    monkeypatch.setattr(loop, "create_unix_connection", unix)
    monkeypatch.setattr(loop, "create_connection", tcp)
    await EngineAddress(socket=Path("/run/llf/engine.sock")).connect(asyncio.Protocol, "engine", 80)
    await EngineAddress(port=8123).connect(asyncio.Protocol, "127.0.0.1", 8123)
    assert opened == [("unix", "/run/llf/engine.sock"), ("tcp", "127.0.0.1", "8123")]
