"""Logging: `event key=value` for humans, one JSON object per line in containers, request ids attached."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from llf_common.logging import NOISY_LOGGERS, configure_logging, request_id_var

log = logging.getLogger("llf.test")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging rewires the root logger; put pytest's handlers and levels back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in (*NOISY_LOGGERS, "uvicorn", "uvicorn.error")}
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_format_writes_one_object_per_line_with_event_and_extras(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json", service="models")
    log.info("pull started", extra={"repo": "a/b", "bytes": 10})
    (record,) = json_lines(capsys.readouterr().err)
    assert record["event"] == "pull started"
    assert (record["level"], record["logger"], record["service"]) == ("INFO", "llf.test", "models")
    assert (record["repo"], record["bytes"]) == ("a/b", 10)
    assert "time" in record


def test_the_request_id_of_the_current_request_is_attached(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    token = request_id_var.set("req-42")
    try:
        log.info("inside a request")
    finally:
        request_id_var.reset(token)
    log.info("outside")
    inside, outside = json_lines(capsys.readouterr().err)
    assert inside["request_id"] == "req-42"
    assert outside.get("request_id") is None


def test_console_format_reads_event_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "console")
    token = request_id_var.set("req-7")
    try:
        log.warning("disk low", extra={"free_gb": 3})
    finally:
        request_id_var.reset(token)
    err = capsys.readouterr().err
    assert "disk low free_gb=3 request_id=req-7" in " ".join(err.split())
    assert "WARNING" in err


def test_the_level_filters_records(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING", "json")
    log.info("hidden")
    log.error("shown")
    assert [r["event"] for r in json_lines(capsys.readouterr().err)] == ["shown"]


def test_noisy_libraries_are_quieted_unless_debugging() -> None:
    configure_logging("INFO", "json")
    assert {logging.getLogger(name).level for name in NOISY_LOGGERS} == {logging.WARNING}
    assert "httpx" in NOISY_LOGGERS and "vllm.entrypoints.openai.api_server" in NOISY_LOGGERS
    configure_logging("DEBUG", "json")
    assert logging.getLogger("httpx").level == logging.INFO


def test_configuring_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    configure_logging("INFO", "json")
    log.info("once")
    assert len(json_lines(capsys.readouterr().err)) == 1
    assert len(logging.getLogger().handlers) == 1


def test_uvicorn_logs_go_through_the_same_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    (record,) = json_lines(capsys.readouterr().err)
    assert record["logger"] == "uvicorn.error"


def test_exceptions_are_logged_with_their_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    try:
        raise ValueError("bad weights")
    except ValueError:
        log.exception("verify failed")
    (record,) = json_lines(capsys.readouterr().err)
    assert "ValueError: bad weights" in str(record["exc_info"])
