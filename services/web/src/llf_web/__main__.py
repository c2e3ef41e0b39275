"""``llf-web``: serve the pages with uvicorn (default 127.0.0.1:8080)."""

from __future__ import annotations

from llf_common.logging import configure_logging
from llf_common.serve import serve
from llf_common.settings import settings_or_exit


def main() -> None:
    from llf_web.settings import WebSettings

    settings = settings_or_exit("llf-web", WebSettings.load)
    configure_logging(settings.log_level, settings.log_format, service="web")

    from llf_web.app import create_app

    serve(create_app, settings)


if __name__ == "__main__":
    main()
