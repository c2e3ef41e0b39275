"""Compose mode gets its images first (pulled or built, scripts/docker-images.sh) or, chosen
automatically, gives way to local mode with one line saying why; a forced Compose mode fails instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.up import compose
from scripts.up.mode import Choice, Target

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
AUTO = Choice("compose", "cpu", "a Docker engine is reachable; no GPU usable by Docker, so the CPU engine")


def builder(problem: str | None = None):
    asked: list[Target] = []

    def build(target: Target) -> None:
        asked.append(target)
        if problem:
            raise compose.ComposeError(problem)

    return build, asked


def test_compose_mode_stays_when_its_images_are_there():
    build, asked = builder()
    assert compose.with_images(AUTO, {}, build) == AUTO
    assert asked == ["cpu"]


def test_images_that_cannot_be_had_mean_local_mode_said_in_one_line(capsys):
    build, _ = builder("cannot pull python:3.11-slim-bookworm, and building llf/base:bookworm needs root")
    choice = compose.with_images(AUTO, {}, build)
    assert (choice.mode, choice.target) == ("local", None)
    said = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(said) == 1
    assert "cannot pull python:3.11-slim-bookworm" in said[0] and "running local mode instead" in said[0]


def test_a_forced_compose_mode_fails_instead_of_falling_back():
    build, _ = builder("cannot pull python:3.11-slim-bookworm")
    forced = Choice("compose", "cpu", "LLF_MODE=compose; no GPU usable by Docker, so the CPU engine")
    with pytest.raises(compose.ComposeError, match="cannot pull"):
        compose.with_images(forced, {"LLF_MODE": "compose"}, build)


def test_local_mode_builds_no_images():
    build, asked = builder()
    local = Choice("local", None, "LLF_MODE=local")
    assert compose.with_images(local, {}, build) == local
    assert asked == []


def test_the_stack_starts_from_local_images_and_never_pulls(monkeypatch, tmp_path):
    ran: list[list[str]] = []

    class Done:
        returncode = 0

    monkeypatch.setattr(compose, "compose_command", lambda run=None: ["docker", "compose"])
    monkeypatch.setattr(compose.subprocess, "run", lambda argv, **kw: ran.append(list(argv)) or Done())
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    compose.up(tmp_path, "cpu", {})
    assert ran[0][-5:] == ["up", "-d", "--pull", "never", "--wait"]


def test_ci_and_make_up_share_the_image_script():
    """One code path: CI's Docker stage and make up's Compose mode both run scripts/docker-images.sh."""
    assert "scripts/docker-images.sh" in (ROOT / "scripts" / "ci-docker.sh").read_text()
    assert compose.IMAGES_SCRIPT == "scripts/docker-images.sh"
    assert (ROOT / compose.IMAGES_SCRIPT).is_file()
