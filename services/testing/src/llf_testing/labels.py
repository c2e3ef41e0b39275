"""Labels that tie every container to the run that started it, and the reaper that reads them.

Ryuk (testcontainers' reaper) is an image this module cannot count on (air-gapped CI, no Docker
Hub), so cleanup is our own: each container carries the session id, the host and the pid (plus
that process's start time, so a recycled pid is not mistaken for the owner). A run that starts
removes the containers of runs whose process is gone; a run that is still alive is never touched.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PREFIX = "org.llf.testing"
MANAGED = f"{PREFIX}.managed"
SESSION = f"{PREFIX}.session"
HOST = f"{PREFIX}.host"
PID = f"{PREFIX}.pid"
PID_START = f"{PREFIX}.pid-start"
ROLE = f"{PREFIX}.role"  # gateway (what a test talks to), helper (one-shot), stack
STACK = f"{PREFIX}.project"  # set by LlfStack; images carry Compose's own project label
PROJECT = "com.docker.compose.project"


def process_start(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat), or "" off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (one we may not signal still exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Owner:
    """The run that owns containers: this process, on this host, in one session."""

    session: str
    host: str
    pid: int
    pid_start: str

    @classmethod
    def current(cls, session: str | None = None) -> Owner:
        pid = os.getpid()
        return cls(session or uuid.uuid4().hex[:12], socket.gethostname(), pid, process_start(pid))

    def labels(self, role: str = "gateway") -> dict[str, str]:
        return {
            MANAGED: "1", SESSION: self.session, HOST: self.host, PID: str(self.pid), PID_START: self.pid_start,
            ROLE: role,
        }  # fmt: skip


def is_orphan(
    labels: Mapping[str, str],
    *,
    host: str,
    alive: Callable[[int], bool] = pid_alive,
    started: Callable[[int], str] = process_start,
) -> bool:
    """Whether the run that labelled a container is gone.

    Only containers of this host are judged (another machine's pids mean nothing here); a missing
    or unreadable pid counts as gone; a live pid whose start time differs is a recycled pid.
    """
    if labels.get(MANAGED) != "1" or labels.get(HOST) != host:
        return False
    try:
        pid = int(labels.get(PID, ""))
    except ValueError:
        return True
    if not alive(pid):
        return True
    recorded = labels.get(PID_START, "")
    return bool(recorded) and started(pid) not in ("", recorded)


OWNER = Owner.current()  # one session per process: every container of this run carries its labels


@dataclass(frozen=True)
class Leftovers:
    """What the reaper removes: containers by id, and Compose projects (their networks and volumes)."""

    containers: list[str]
    projects: list[str]


def leftovers(
    containers: Iterable[tuple[str, Mapping[str, str]]],
    *,
    host: str,
    alive: Callable[[int], bool] = pid_alive,
    started: Callable[[int], str] = process_start,
) -> Leftovers:
    """The orphans among ``(id, labels)`` pairs, and the Compose projects they belonged to."""
    ids: list[str] = []
    projects: list[str] = []
    for container_id, labels in containers:
        if is_orphan(labels, host=host, alive=alive, started=started):
            ids.append(container_id)
            project = labels.get(STACK)
            if project and project not in projects:
                projects.append(project)
    return Leftovers(ids, projects)
