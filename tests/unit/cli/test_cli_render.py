"""Rendering details (render.py, progress.py): sizes, durations, the live bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from llf_cli import progress, render
from rich.console import Console

from tests.unit.cli.fakes import job_info


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Make every console a colour terminal writing into a buffer."""
    buffer = io.StringIO()

    def fake_console(*, stderr: bool = False) -> Console:
        return Console(file=buffer, force_terminal=True, width=120, color_system="standard", highlight=False)

    monkeypatch.setattr(render, "console", fake_console)
    return buffer


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "-"), (-1, "-"), (5.4, "5s"), (75, "1m15s"), (3 * 3600 + 120, "3h02m")]
)
def test_durations_read_like_a_clock(seconds: float | None, text: str) -> None:
    assert render.duration(seconds) == text


def test_ages_and_sizes_are_tolerant() -> None:
    assert render.age(None) == "-"
    assert render.age("yesterday") == "yesterday"
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert render.age(an_hour_ago) == "1h00m ago"
    assert render.size(None) == "-" and render.size(1_500_000) == "1.5 MB"


def test_the_live_bar_shows_phase_bytes_rate_eta_and_file(terminal: io.StringIO) -> None:
    live = progress.job_progress()
    assert isinstance(live, progress.LiveProgress)
    with live as bar:
        bar.update(job_info("queued", phase="waiting", done=0, position=2))
        bar.update(job_info("started", phase="download", done=1_000_000))
        bar.update(job_info("finished"))
    text = terminal.getvalue()
    assert "\x1b[" in text
    assert "done" in text and "2.5/2.5 MB" in text and "model.safetensors" in text


def test_plain_progress_prints_a_line_per_phase_and_quarter(capsys: pytest.CaptureFixture[str]) -> None:
    with progress.PlainProgress() as bar:
        for done in (0, 100_000, 700_000, 800_000, 1_300_000, 2_000_000):
            bar.update(job_info("started", phase="download", done=done))
        bar.update(job_info("queued", phase="waiting", done=0))
        bar.update(job_info("started", phase="waiting", done=0))
        bar.update(job_info("failed", phase="download", done=5))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[0] for line in lines] == ["downloading"] * 4 + ["queued", "starting", "failed"]
    assert "eta 2s" in lines[0] and "100%" not in "".join(lines)


def test_tables_use_colour_only_on_a_terminal(terminal: io.StringIO) -> None:
    replica = {"id": "r1", "model": "a/b", "last_error": "boom", "log_tail": [f"line {i}" for i in range(20)]}
    render.status_view("http://r", True, "http://g", {"state": "degraded", "models": ["a/b"], "replicas": [replica]})
    text = terminal.getvalue()
    assert "\x1b[" in text and "r1: boom" in text
    assert "line 19" in text and "line 12" in text and "line 11" not in text


def test_waiting_shows_a_spinner_on_a_terminal(terminal: io.StringIO) -> None:
    with progress.waiting("loading"):
        pass
    assert "loading" in terminal.getvalue()


def test_job_percent_is_full_when_finished_and_unknown_without_total() -> None:
    assert render.job_percent({"state": "finished"}) == "100%"
    assert render.job_percent({"state": "started", "progress": {}}) == "-"
