"""The progress of registry jobs (pull, verify, import): a live rich bar or a few plain lines.

On a terminal the bar goes to stderr (phase, bytes, rate, ETA, current file); anywhere else
there is no animation and no colour, only a line per phase change and per quarter of the bytes,
so logs stay short and stdout keeps only the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from llf_common.wire import UNSUCCESSFUL_JOB_STATES
from rich.console import Console
from rich.filesize import decimal
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn

from llf_cli import render

PHASE_LABELS = {
    "waiting": "waiting",
    "preflight": "checking",
    "download": "downloading",
    "verify": "verifying",
    "done": "done",
}


def _label(job: dict[str, Any]) -> str:
    progress = job.get("progress") or {}
    state = job.get("state")
    if state == "queued":
        position = job.get("position")
        return "queued" if position is None else f"queued (#{position + 1})"
    if state in UNSUCCESSFUL_JOB_STATES:
        return str(state)
    if state == "started" and progress.get("phase", "waiting") == "waiting":
        return "starting"
    return PHASE_LABELS.get(progress.get("phase", "waiting"), str(progress.get("phase")))


def _rate_eta(progress: dict[str, Any]) -> tuple[str, str]:
    rate = float(progress.get("rate_bps") or 0.0)
    remaining = (progress.get("bytes_total") or 0) - (progress.get("bytes_done") or 0)
    if rate <= 0:
        return "", ""
    return f"{decimal(int(rate))}/s", f"eta {render.duration(remaining / rate)}" if remaining > 0 else ""


class LiveProgress:
    """A rich bar on stderr: phase, bytes, rate, ETA, current file."""

    def __init__(self, out: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(bar_width=30),
            TextColumn("{task.percentage:>3.0f}%"),
            DownloadColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[eta]}"),
            TextColumn("[dim]{task.fields[file]}", markup=True),
            console=out,
            transient=False,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> LiveProgress:
        self.progress.start()
        return self

    def update(self, job: dict[str, Any]) -> None:
        progress = job.get("progress") or {}
        rate, eta = _rate_eta(progress)
        fields: dict[str, Any] = {"rate": rate, "eta": eta, "file": escape(progress.get("current_file") or "")}
        total = progress.get("bytes_total") or None
        done = progress.get("bytes_done") or 0
        if job.get("state") == "finished" and total:
            done = total
        if self.task is None:
            self.task = self.progress.add_task(_label(job), total=total, completed=done, **fields)
        else:
            self.progress.update(self.task, description=_label(job), total=total, completed=done, **fields)

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


class PlainProgress:
    """A handful of lines for logs: each phase change and every quarter of the bytes."""

    def __init__(self) -> None:
        self.last: tuple[str, int] | None = None

    def __enter__(self) -> PlainProgress:
        return self

    def update(self, job: dict[str, Any]) -> None:
        progress = job.get("progress") or {}
        total = progress.get("bytes_total") or 0
        done = total if job.get("state") == "finished" and total else progress.get("bytes_done") or 0
        quarter = int(4 * done / total) if total else 0
        key = (_label(job), quarter)
        if key == self.last:
            return
        self.last = key
        parts = [f"{key[0]:<12}"]
        if total:
            parts.append(f"{100 * done / total:3.0f}%  {render.size(done)} / {render.size(total)}")
        rate, eta = _rate_eta(progress)
        parts += [p for p in (rate, eta, progress.get("current_file") or "") if p]
        click.echo("  ".join(parts).rstrip(), err=True)

    def __exit__(self, *exc: object) -> None:
        return None


def job_progress() -> LiveProgress | PlainProgress:
    out = render.console(stderr=True)
    return LiveProgress(out) if out.is_terminal else PlainProgress()


@contextmanager
def waiting(message: str) -> Iterator[None]:
    """A spinner on a terminal, one plain line elsewhere, while something slow happens."""
    out = render.console(stderr=True)
    if not out.is_terminal:
        click.echo(message, err=True)
        yield
        return
    with out.status(message):
        yield
