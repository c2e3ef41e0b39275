"""The e2e session waits for CI's background image build and reads its exit code (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest


def test_a_finished_build_returns_its_exit_code(tmp_path: Path) -> None:
    (tmp_path / "rc").write_text("0\n")
    assert conftest.wait_for_image_build(tmp_path / "rc", tmp_path / "log") == 0


def test_a_failed_build_prints_its_log_tail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rc").write_text("3\n")
    (tmp_path / "log").write_text("".join(f"line {n}\n" for n in range(100)))
    assert conftest.wait_for_image_build(tmp_path / "rc", tmp_path / "log") == 3
    out = capsys.readouterr().out
    assert "line 99" in out and "line 59" not in out


def test_a_build_that_never_ends_fails_at_the_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "IMAGES_TIMEOUT_S", 0.1)
    (tmp_path / "log").write_text("still building\n")
    with pytest.raises(AssertionError, match="still building"):
        conftest.wait_for_image_build(tmp_path / "rc", tmp_path / "log")
