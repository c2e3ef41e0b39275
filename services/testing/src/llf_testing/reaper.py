"""Remove what killed runs left behind: their containers, and the networks and volumes of their stacks.

Stacks are found by our own project label: Compose's ``com.docker.compose.project`` is also inherited
from the images it built (``llf``), and must never lead the reaper to someone's ``make up`` stack.
Called by every ``LlfContainer.start`` and ``LlfStack.start`` before it creates anything, so a run
that was SIGKILLed (no ``finally`` ran) is cleaned up by the next one. Named volumes that hold
models (``llf-testing-*``) belong to no project and are never removed.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from llf_testing.labels import MANAGED, PROJECT, Leftovers, leftovers


def reap(client: Any, host: str | None = None) -> Leftovers:
    """Remove orphans of this host's dead runs (``client``: a ``docker.DockerClient``); what was removed."""
    import docker.errors

    host = host or socket.gethostname()
    managed = client.containers.list(all=True, filters={"label": f"{MANAGED}=1"})
    found = leftovers(((c.id, c.labels) for c in managed), host=host)
    doomed = set(found.containers)
    for project in found.projects:
        doomed.update(c.id for c in client.containers.list(all=True, filters={"label": f"{PROJECT}={project}"}))
    for container_id in doomed:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(container_id).remove(force=True, v=True)
    for project in found.projects:
        for network in client.networks.list(filters={"label": f"{PROJECT}={project}"}):
            with contextlib.suppress(docker.errors.APIError):
                network.remove()
        for volume in client.volumes.list(filters={"label": f"{PROJECT}={project}"}):
            with contextlib.suppress(docker.errors.APIError):
                volume.remove(force=True)
    return Leftovers(sorted(doomed), found.projects)
