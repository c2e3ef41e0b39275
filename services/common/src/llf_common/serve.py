"""Serving a service's app under uvicorn: what every ``llf-*`` server entry point does the same way.

One place for the choices the services share: uvicorn logs through ours (``log_config=None``,
after ``configure_logging``), keeps idle connections longer than clients keep theirs
(``KEEP_ALIVE_S``), ignores ``X-Forwarded-*`` by default (a service here is reached directly,
not through a proxy it could trust) and lets requests in flight finish for a few seconds on
SIGTERM. A service passes what differs (the gateway: its drain time, a required lifespan, and
the engines it must stop on the way out).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol, TypeVar

from starlette.types import ASGIApp

from llf_common.web import KEEP_ALIVE_S


class Listens(Protocol):
    """The settings ``serve`` reads: where to listen."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


_L = TypeVar("_L", bound=Listens)


def serve(
    app_factory: Callable[[_L], ASGIApp],
    settings: _L,
    *,
    graceful_shutdown_s: int = 5,
    proxy_headers: bool = False,
    cleanup: Callable[[], None] | None = None,
    **options: Any,
) -> None:
    """Serve ``app_factory(settings)`` on ``settings.host:settings.port`` until SIGTERM or SIGINT.

    ``options`` are uvicorn's (``lifespan="on"``: a failed start-up stops the server). Without
    ``cleanup`` this is ``uvicorn.run``. With it (a service that owns child processes), SIGTERM -
    during start-up, or re-raised by uvicorn once it has drained - ends the process with exit code
    0 through ``cleanup``, which runs whatever happened, so no child outlives the service.
    """
    import uvicorn

    config: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "proxy_headers": proxy_headers,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "timeout_graceful_shutdown": graceful_shutdown_s,
        **options,
    }
    app = app_factory(settings)
    if cleanup is None:
        uvicorn.run(app, **config)
        return
    server = uvicorn.Server(uvicorn.Config(app, **config))
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        server.run()
    finally:
        cleanup()


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
