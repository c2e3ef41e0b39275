"""``llf-models``: serve the registry API with uvicorn (default 127.0.0.1:8001)."""

from __future__ import annotations

import sys

from llf_common.errors import ConfigError
from llf_common.logging import configure_logging
from llf_common.web import KEEP_ALIVE_S


def main() -> None:
    from llf_models.settings import get_settings

    try:
        settings = get_settings()
    except ConfigError as exc:
        print(f"llf-models: {exc.detail}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format, service="models")
    from llf_models.settings import quiet_http_logs

    quiet_http_logs(settings.log_level)

    import uvicorn

    from llf_models.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
