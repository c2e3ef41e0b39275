"""``llf-inference``: run the gateway with uvicorn until SIGTERM/SIGINT.

On SIGTERM uvicorn stops accepting connections and lets streams finish for at most
``drain_timeout_s``; the app's lifespan then stops every engine by process group. The
``cleanup`` given to ``serve`` is the last line of defence: whatever happened, no engine
outlives us (engines also get SIGTERM from the kernel if this process dies, see ``engine.py``).
"""

from __future__ import annotations

from llf_common.logging import configure_logging
from llf_common.serve import serve
from llf_common.settings import settings_or_exit

from llf_inference.settings import InferenceSettings, get_settings


def main() -> None:
    settings = settings_or_exit("llf-inference", get_settings)
    configure_logging(settings.log_level, settings.log_format, service="inference")
    settings.ensure_dirs()

    from llf_inference.app import create_app

    serve(
        create_app,
        settings,
        graceful_shutdown_s=max(1, int(settings.drain_timeout_s)),
        cleanup=lambda: _stop_engines(settings),
        access_log=False,
        lifespan="on",
    )


def _stop_engines(settings: InferenceSettings) -> None:
    from llf_inference.engine.process import stop_all_engines

    stop_all_engines(settings.stop_timeout_s)


if __name__ == "__main__":
    main()
