"""Logging set-up shared by every process: coloured console for humans, JSON in containers.

Log lines read ``event key=value``: callers pass the event as the message and the values as
``extra``. The request id of the current request (see ``llf_common.web``) is attached to
every record so one request can be followed across services.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Any, Literal

REQUEST_ID_HEADER = "X-Request-ID"
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("llf_request_id", default=None)

NOISY_LOGGERS = (
    "httpx",
    "httpcore",
    "urllib3",
    "filelock",
    "huggingface_hub",
    "uvicorn.access",
    "vllm.entrypoints.openai.api_server",
    "rq.worker",
    "multipart",
)

# Attributes every LogRecord has; anything else was passed in ``extra`` and is printed.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",
    "taskName",
}


class RequestIdFilter(logging.Filter):
    """Copies the request id from the context into each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get()
        return True


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` values of a record, in the order they were given."""
    extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}
    request_id = getattr(record, "request_id", None)
    if request_id:
        extras["request_id"] = request_id
    return extras


class KeyValueFormatter(logging.Formatter):
    """``event key=value ...`` for the console (rich adds colour, time and level)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        pairs = " ".join(f"{k}={v}" for k, v in record_extras(record).items())
        text = f"{message} {pairs}" if pairs else message
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _json_handler() -> logging.Handler:
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "message": "event"},
        )
    )
    return handler


def _console_handler() -> logging.Handler:
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(
        console=Console(stderr=True),
        show_path=False,
        rich_tracebacks=False,
        markup=False,
        log_time_format="%H:%M:%S",
    )
    handler.setFormatter(KeyValueFormatter())
    return handler


def configure_logging(
    level: str = "INFO", fmt: Literal["console", "json"] = "console", *, service: str | None = None
) -> None:
    """(Re)configure the root logger; safe to call more than once."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = _json_handler() if fmt == "json" else _console_handler()
    handler.addFilter(RequestIdFilter())
    if service and fmt == "json":
        handler.addFilter(_ServiceFilter(service))
    root.addHandler(handler)
    root.setLevel(level)
    quiet = logging.WARNING if level != "DEBUG" else logging.INFO
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)  # follow the root level, whatever an earlier uvicorn set


class _ServiceFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        return True
