"""``llf-models``: serve the registry API with uvicorn (default 127.0.0.1:8001)."""

from __future__ import annotations

from llf_common.logging import configure_logging
from llf_common.serve import serve
from llf_common.settings import settings_or_exit


def main() -> None:
    from llf_models.settings import get_settings, quiet_http_logs

    settings = settings_or_exit("llf-models", get_settings)
    configure_logging(settings.log_level, settings.log_format, service="models")
    quiet_http_logs(settings.log_level)

    from llf_models.app import create_app

    serve(create_app, settings)


if __name__ == "__main__":
    main()
