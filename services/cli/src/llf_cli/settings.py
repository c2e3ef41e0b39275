"""The CLI's settings: the shared base plus the ``cli`` section of the config file.

Loaded only when a command runs (pydantic-settings costs a third of a second to import),
never for ``llf --help``. Environment variables are ``LLF_CLI_<KEY>`` (``LLF_CLI_TEMPERATURE``).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from llf_common.errors import ConfigError
from llf_common.settings import LLFSettings
from pydantic import Field

from llf_cli.errors import EXIT_UNREACHABLE, CLIError


class CLISettings(LLFSettings):
    """Chat defaults and how long to wait for the services."""

    section = "cli"
    # Read from LLF_<KEY> before LLF_CLI_<KEY> was the rule (accepted for one more release).
    legacy_env_fields = frozenset(
        {"history_file", "temperature", "top_p", "max_tokens", "connect_timeout", "request_timeout", "serve_timeout",
         "stream_timeout", "poll_interval"}
    )  # fmt: skip

    history_file: Path | None = Field(None, description="REPL input history. Default: $LLF_HOME/chat_history.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Default sampling temperature for chat.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Default nucleus sampling; unset = engine default.")
    max_tokens: int = Field(1024, ge=1, description="Default cap on the tokens of one answer.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to wait for a service to accept a connection.")
    request_timeout: float = Field(30.0, gt=0, description="Seconds to wait for an ordinary answer.")
    serve_timeout: float = Field(900.0, gt=0, description="Seconds to wait for an engine to load a model.")
    stream_timeout: float = Field(300.0, gt=0, description="Seconds of silence tolerated inside a stream.")
    poll_interval: float = Field(0.5, gt=0, description="Seconds between job polls when SSE is unavailable.")

    @cached_property
    def history_path(self) -> Path:
        return (self.history_file or self.home / "chat_history").expanduser()


def get_settings(**overrides: Any) -> CLISettings:
    """Settings from env and config file; a broken configuration is one line and exit 2."""
    try:
        settings = CLISettings.load(**overrides)
    except ConfigError as exc:
        raise CLIError(exc.detail, EXIT_UNREACHABLE) from exc
    assert isinstance(settings, CLISettings)
    return settings
