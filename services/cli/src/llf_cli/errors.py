"""The CLI's two kinds of failure, as click exceptions so click prints them and sets the exit code.

Kept free of heavy imports: ``main`` and ``client`` both raise these, and ``llf --help``
must not pay for httpx or rich.
"""

from __future__ import annotations

from typing import IO, Any

import click

EXIT_ERROR = 1
"""The service answered, but no: a 4xx, a failed job, bad input."""
EXIT_UNREACHABLE = 2
"""Nothing to talk to (service down, timeout) or a broken configuration."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (detached from a job or stopped waiting); the work goes on server-side."""


class CLIError(click.ClickException):
    """One red line on stderr and an exit code; never a traceback (unless ``LLF_DEBUG=1``)."""

    def __init__(
        self, message: str, exit_code: int = EXIT_ERROR, *, status: int | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it a class default
        self.status = status
        """The HTTP status behind the error, when a service answered."""
        self.detail = detail or message
        """The service's own words, without the CLI's framing."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.secho(f"error: {self.format_message()}", fg="red", err=file is None, file=file)


class Unreachable(CLIError):
    """A service could not be reached or did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_UNREACHABLE)


class Detached(CLIError):
    """Ctrl-C while following a job: not a failure, so not red; says how to get back."""

    def __init__(self, job_id: str) -> None:
        message = f"detached; job {job_id} keeps running. Reattach: `llf jobs watch {job_id}`"
        super().__init__(f"{message} · cancel: `llf jobs cancel {job_id}`", EXIT_INTERRUPTED)

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.format_message(), err=file is None, file=file)
