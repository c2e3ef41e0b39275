"""Where one engine start listens, and how the gateway reaches it.

vLLM checks its per-start key (``VLLM_API_KEY``) only on ``/v1``, ``/v2``, ``/inference`` and
``/cohere``: on a loopback port, ``/invocations``, ``/tokenize``, ``/pooling``, ``/score``,
``/rerank`` and ``/metrics`` answer any local user, past the gateway's key. So by default
(``engine_listen = "unix"``) an engine listens on a Unix socket (vLLM's ``--uds``) in a directory
made fresh for that start with mode 0700: only the gateway's user can enter it, so no other user
can connect at all, whatever the route, and the engine has no TCP port. ``"tcp"`` (a free
loopback port) is kept for whoever must reach an engine directly, such as a benchmark comparing
the gateway with the engine alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

EngineListen = Literal["unix", "tcp"]

# Linux's sockaddr_un.sun_path holds 108 bytes, the terminating NUL included; vLLM's bind of a
# longer path fails ("AF_UNIX path too long"), so a long run dir falls back to a short temp dir.
SUN_PATH_MAX = 107
SOCKET_NAME = "engine.sock"
DIR_PREFIX = "llf-engine-"  # also names the directory when it falls back to /tmp
_MKDTEMP_SUFFIX = 8  # the random characters tempfile.mkdtemp appends to the prefix
UDS_BASE_URL = "http://engine"  # the host part is ignored on a Unix socket; it names the peer in logs


def free_port() -> int:
    """A loopback port nobody listens on right now (a start that loses the race is retried)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def socket_path_fits(parent: Path) -> bool:
    """Whether a socket in a fresh directory under ``parent`` has a path AF_UNIX can bind."""
    longest = Path(parent) / (DIR_PREFIX + "x" * _MKDTEMP_SUFFIX) / SOCKET_NAME
    return len(os.fsencode(longest)) <= SUN_PATH_MAX


def socket_parents(run_path: Path) -> list[Path]:
    """Where an engine's socket directory may go, best first: the run dir, then short temp dirs."""
    return [Path(run_path).absolute() / "engines", Path(tempfile.gettempdir()), Path("/tmp")]


def private_socket(parents: Iterable[Path]) -> Path:
    """A socket path in a new directory (mode 0700, ours) under the first parent short enough.

    ``mkdtemp`` creates the directory itself, exclusively, with mode 0700: nobody else can have
    made it beforehand or enter it afterwards. The chmod only makes sure a strange umask did not
    take bits away that the gateway itself needs.
    """
    tried = []
    for parent in parents:
        if not socket_path_fits(parent):
            tried.append(str(parent))
            continue
        parent.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=parent))
        os.chmod(directory, 0o700)
        return directory / SOCKET_NAME
    raise OSError(f"no directory short enough for an engine socket (AF_UNIX paths: {SUN_PATH_MAX} bytes): {tried}")


@dataclass(frozen=True)
class EngineAddress:
    """One engine start's address: a Unix socket path, or a loopback TCP port."""

    socket: Path | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        if (self.socket is None) == (self.port is None):
            raise ValueError("an engine address is a socket or a port, not both or neither")

    @classmethod
    def allocate(cls, listen: EngineListen, run_path: Path) -> EngineAddress:
        """A new address for one engine start: a private socket (``unix``) or a free port (``tcp``)."""
        if listen == "tcp":
            return cls(port=free_port())
        return cls(socket=private_socket(socket_parents(run_path)))

    @property
    def argv(self) -> list[str]:
        """vLLM's arguments for listening here."""
        if self.socket is not None:
            return ["--uds", str(self.socket)]
        return ["--host", "127.0.0.1", "--port", str(self.port)]

    @property
    def base_url(self) -> str:
        return UDS_BASE_URL if self.socket is not None else f"http://127.0.0.1:{self.port}"

    async def connect(
        self, factory: Callable[[], asyncio.Protocol], host: str, port: int
    ) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
        """An asyncio connection to this engine for ``factory``'s protocol: the replica's
        ``EngineTransport`` connector (``transport.py``).

        On a socket, ``host`` and ``port`` (from the request URL) are ignored: the socket is the engine.
        """
        loop = asyncio.get_running_loop()
        if self.socket is not None:
            return await loop.create_unix_connection(factory, str(self.socket))
        return await loop.create_connection(factory, host, port)

    def remove(self) -> None:
        """Delete the socket and its private directory once the engine is gone (idempotent)."""
        if self.socket is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        with contextlib.suppress(OSError):  # not empty: something else is in there, leave it
            self.socket.parent.rmdir()

    def __str__(self) -> str:
        return f"unix:{self.socket}" if self.socket is not None else f"127.0.0.1:{self.port}"
