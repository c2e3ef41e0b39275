"""A starting gateway removes the engine socket directories a killed one left behind, and nothing else.

Each engine start has its own 0700 directory with ``engine.sock`` (``engine/address.py``); a gateway
killed with SIGKILL leaves them. The sweep removes one only when no engine can still use it. A
live engine is stood for by a real AF_UNIX socket bound in-process (listening: serving; bound
but not listening: vLLM loading its model); a dead one by a socket bound and closed, whose file
stays and refuses connections. Nothing is started.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llf_inference import gateway as gateway_module
from llf_inference.app import create_app
from llf_inference.engine.address import private_socket, socket_parents
from llf_inference.engine.sweep import sweep_engine_dirs
from llf_inference.gateway import Gateway

from tests.unit.inference.conftest import MakeSettings
from tests.unit.inference.fakes import FakeResolver

pytestmark = pytest.mark.anyio

GRACE_S = 600.0




@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """The sockets a test holds open (its live engines), closed afterwards."""
    held: list[socket.socket] = []
    try:
        yield held
    finally:
        for sock in held:
            sock.close()


def bound(path: Path, *, listen: bool, held: list[socket.socket]) -> None:
    """A socket bound at ``path``: listening (an engine serving) or not yet (an engine loading)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    held.append(sock)
    sock.bind(str(path))
    if listen:
        sock.listen()


def dead_engine(short_dir: Path) -> Path:
    """An engine directory whose engine bound its socket and died: the file stays and refuses."""
    path = private_socket([short_dir])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
    return path


def age(directory: Path, seconds: float = 2 * GRACE_S) -> None:
    then = time.time() - seconds
    os.utime(directory, (then, then), follow_symlinks=False)


def test_a_directory_whose_engine_died_is_removed_at_once_with_one_log_line(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = dead_engine(short_dir), dead_engine(short_dir)
    with caplog.at_level(logging.INFO, logger="llf_inference.engine.sweep"):
        removed = sweep_engine_dirs([short_dir], grace_s=GRACE_S)
    assert sorted(removed) == sorted([first.parent, second.parent])
    assert not first.parent.exists() and not second.parent.exists()
    lines = [(r.getMessage(), getattr(r, "path", None)) for r in caplog.records]
    assert sorted(lines) == sorted(("stale engine directory removed", str(p.parent)) for p in (first, second))


def test_a_directory_whose_engine_listens_is_kept(short_dir: Path, sockets: list[socket.socket]) -> None:
    path = private_socket([short_dir])
    bound(path, listen=True, held=sockets)
    age(path.parent)
    assert sweep_engine_dirs([short_dir], grace_s=GRACE_S) == []
    assert path.exists()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(path))  # still served


def test_a_socket_bound_by_an_engine_still_loading_its_model_is_kept(
    short_dir: Path, sockets: list[socket.socket]
) -> None:
    path = private_socket([short_dir])
    bound(path, listen=False, held=sockets)  # vLLM binds first and listens once the model is loaded
    age(path.parent)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client, pytest.raises(ConnectionRefusedError):
        client.connect(str(path))
    assert sweep_engine_dirs([short_dir], grace_s=GRACE_S) == []
    assert path.exists()


def test_a_directory_with_no_socket_yet_is_kept_until_a_start_would_have_timed_out(short_dir: Path) -> None:
    path = private_socket([short_dir])  # the engine is still importing: it has not bound yet
    assert sweep_engine_dirs([short_dir], grace_s=GRACE_S) == []
    assert path.parent.exists()
    later = time.time() + GRACE_S + 1
    assert sweep_engine_dirs([short_dir], grace_s=GRACE_S, clock=lambda: later) == [path.parent]
    assert not path.parent.exists()


def test_without_the_table_of_bound_sockets_a_refused_socket_also_waits_out_the_grace(short_dir: Path) -> None:
    path = dead_engine(short_dir)
    assert sweep_engine_dirs([short_dir], grace_s=GRACE_S, bound=lambda: None) == []
    later = time.time() + GRACE_S + 1
    assert sweep_engine_dirs([short_dir], grace_s=GRACE_S, bound=lambda: None, clock=lambda: later) == [path.parent]


def test_a_directory_owned_by_another_user_is_left_alone(short_dir: Path) -> None:
    path = dead_engine(short_dir)
    age(path.parent)
    assert sweep_engine_dirs([short_dir], grace_s=GRACE_S, uid=os.getuid() + 1) == []
    assert path.exists()


def test_a_symlink_is_left_alone_and_not_followed(short_dir: Path) -> None:
    engines, away = short_dir / "engines", short_dir / "away"
    engines.mkdir()
    away.mkdir()
    target = dead_engine(away)
    link = engines / "llf-engine-linked0"
    link.symlink_to(target.parent, target_is_directory=True)
    (engines / "llf-engine-sock0000").symlink_to(target)  # a link where a directory should be
    assert sweep_engine_dirs([engines], grace_s=GRACE_S) == []
    assert link.is_symlink() and target.exists()


def test_a_link_in_place_of_the_socket_is_not_deleted_nor_its_directory(short_dir: Path) -> None:
    away = short_dir / "away"
    away.mkdir()
    target = dead_engine(away)
    path = private_socket([short_dir])
    path.symlink_to(target)
    age(path.parent)
    assert sweep_engine_dirs([short_dir], grace_s=GRACE_S) == []
    assert path.is_symlink() and target.exists()


def test_only_the_socket_and_its_empty_directory_go(short_dir: Path) -> None:
    path = dead_engine(short_dir)
    (path.parent / "note").write_text("not an engine's")
    other = short_dir / "engines-log"
    other.mkdir()
    age(other)
    assert sweep_engine_dirs([short_dir], grace_s=GRACE_S) == []
    assert (path.parent / "note").exists() and other.exists()


def test_the_same_parent_named_twice_is_swept_once(short_dir: Path) -> None:
    path = dead_engine(short_dir)
    assert sweep_engine_dirs([short_dir, Path(str(short_dir)), short_dir / "missing"], grace_s=GRACE_S) == [path.parent]


async def test_the_gateway_sweeps_its_socket_parents_when_it_starts(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    calls: list[tuple[list[Path], dict[str, Any]]] = []

    def sweep(parents: list[Path], **options: Any) -> list[Path]:
        calls.append((parents, options))
        return []

    monkeypatch.setattr(gateway_module, "sweep_engine_dirs", sweep)
    settings = make_settings(run_dir=short_dir / "run")
    app = create_app(settings, Gateway(settings, resolver=FakeResolver()))
    async with app.router.lifespan_context(app):
        assert calls == [(socket_parents(settings.run_path), {"grace_s": settings.readiness_timeout_s})]
