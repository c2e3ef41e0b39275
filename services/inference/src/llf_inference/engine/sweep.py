"""The engine socket directories a killed gateway left behind, removed when a gateway starts.

Each engine start gets a fresh 0700 directory ``llf-engine-XXXXXXXX`` for its ``engine.sock``
(``address.py``), and the gateway removes it when the engine stops. A gateway killed with
SIGKILL removes nothing, so a starting gateway sweeps the socket parents. It removes a directory
only when no engine can still be using it: a real directory (a symlink is left alone, never
followed), owned by this user, whose socket accepts no connection and which no live process
holds. A refused connect alone does not say the engine is gone: vLLM binds its socket before it
loads the model and listens only once the model is loaded, minutes later. So a socket some
process still holds bound (Linux lists them in ``/proc/net/unix``) is kept, and a directory with
no socket yet is kept for ``grace_s`` after it was made (the engine is still importing; the
caller passes the readiness timeout, past which its gateway gives the start up and removes the
directory itself). Only the socket and the then empty directory are deleted: anything else in it
makes the directory stay.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from llf_inference.engine.address import DIR_PREFIX, SOCKET_NAME

log = logging.getLogger(__name__)

Probe = Literal["listening", "refused", "missing", "unknown"]
PROBE_TIMEOUT_S = 0.5  # a live engine with a full backlog makes a connect wait; it counts as live


def bound_socket_paths(table: Path = Path("/proc/net/unix")) -> frozenset[str] | None:
    """Real paths of the Unix sockets live processes hold bound (listening or not); None if unknown."""
    try:
        lines = table.read_text(errors="replace").splitlines()[1:]
    except OSError:
        return None
    paths = (fields[7] for fields in (line.split(None, 7) for line in lines) if len(fields) == 8)
    return frozenset(os.path.realpath(p) for p in paths if p.endswith(SOCKET_NAME) and DIR_PREFIX in p)


def sweep_engine_dirs(
    parents: Iterable[Path],
    *,
    grace_s: float,
    uid: int | None = None,
    bound: Callable[[], frozenset[str] | None] = bound_socket_paths,
    clock: Callable[[], float] = time.time,
) -> list[Path]:
    """Remove the engine directories under ``parents`` that nothing uses any more; returns them.

    ``uid`` (default: ours) is the owner a directory must have; ``bound`` and ``clock`` are the
    sockets held bound and the wall clock, for tests.
    """
    owner = os.getuid() if uid is None else uid
    held = bound()
    cutoff = clock() - grace_s
    removed = []
    for parent in dict.fromkeys(Path(p) for p in parents):  # the temp dir is usually /tmp too
        try:
            names = sorted(n for n in os.listdir(parent) if n.startswith(DIR_PREFIX))
        except OSError:
            continue
        for name in names:
            directory = parent / name
            if _remove_if_stale(directory, owner, held, cutoff):
                log.info("stale engine directory removed", extra={"path": str(directory)})
                removed.append(directory)
    return removed


def _remove_if_stale(directory: Path, owner: int, held: frozenset[str] | None, cutoff: float) -> bool:
    """Remove ``directory`` if it is ours and no engine can use it; whether it was removed."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)  # a symlink fails here
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if info.st_uid != owner:
            return False
        sock = directory / SOCKET_NAME
        probe = _probe(fd, sock)
        if probe in ("listening", "unknown") or (held is not None and os.path.realpath(sock) in held):
            return False  # served, or bound by an engine still loading its model
        abandoned = probe == "refused" and held is not None  # a socket file no process holds
        if not abandoned and info.st_mtime > cutoff:
            return False  # no socket yet (the engine is starting), or no way to tell who holds it
        if probe == "refused":
            os.unlink(SOCKET_NAME, dir_fd=fd)
        os.rmdir(directory)  # fails if anything else is (or has just come) in it
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _probe(fd: int, sock: Path) -> Probe:
    """Whether something listens on ``sock``: only a socket file that refuses counts as abandoned."""
    try:
        kind = os.stat(SOCKET_NAME, dir_fd=fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unknown"
    if not stat.S_ISSOCK(kind):
        return "unknown"  # not what an engine leaves: not ours to delete
    with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as client:
        client.settimeout(PROBE_TIMEOUT_S)
        try:
            client.connect(str(sock))
        except ConnectionRefusedError:
            return "refused"
        except FileNotFoundError:
            return "missing"
        except OSError:  # a timeout or a full backlog: someone is there
            return "unknown"
    return "listening"
