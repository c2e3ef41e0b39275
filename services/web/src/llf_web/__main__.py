"""``llf-web``: serve the pages with uvicorn (default 127.0.0.1:8080)."""

from __future__ import annotations

import sys

from llf_common.errors import ConfigError
from llf_common.logging import configure_logging
from llf_common.web import KEEP_ALIVE_S


def main() -> None:
    from llf_web.settings import WebSettings

    try:
        settings = WebSettings.load()
    except ConfigError as exc:
        print(f"llf-web: {exc.detail}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format, service="web")

    import uvicorn

    from llf_web.app import create_app

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
