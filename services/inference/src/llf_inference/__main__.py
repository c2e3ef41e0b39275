"""``llf-inference``: run the gateway with uvicorn until SIGTERM/SIGINT.

On SIGTERM uvicorn stops accepting connections and lets streams finish for at most
``drain_timeout_s``; the app's lifespan then stops every engine by process group. The
``finally`` below is the last line of defence: whatever happened, no engine outlives us
(engines also get SIGTERM from the kernel if this process dies, see ``engine.py``).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import uvicorn
from llf_common.errors import ConfigError
from llf_common.logging import configure_logging
from llf_common.web import KEEP_ALIVE_S

from llf_inference.settings import get_settings


def main() -> None:
    try:
        settings = get_settings()
    except ConfigError as exc:
        print(f"llf-inference: {exc.detail}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format, service="inference")
    settings.ensure_dirs()

    from llf_inference.app import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)),
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn handles SIGTERM while it runs (drain, lifespan shutdown) and re-raises it once done;
    # this handler turns that (or a SIGTERM during start-up) into a clean exit through ``finally``.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        server.run()
    finally:
        from llf_inference.engine.process import stop_all_engines

        stop_all_engines(settings.stop_timeout_s)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
