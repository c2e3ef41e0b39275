"""Fixtures of the CLI unit tests: a clean environment, the fake services and an in-process ``llf``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from llf_cli.main import State, cli

from tests.support.env import isolate_env
from tests.unit.cli.fakes import GATEWAY, REGISTRY, Fake

Invoke = Callable[..., Result]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No developer's ~/.llf, keys or URLs leak into a test."""
    isolate_env(monkeypatch, tmp_path / "home")
    yield


@pytest.fixture
def fake() -> Fake:
    return Fake()


@pytest.fixture
def llf(fake: Fake) -> Invoke:
    """``llf(*args, input=...)`` runs the CLI in-process against the fake services."""

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None, **overrides: Any) -> Result:
        state = State(
            transport=httpx.MockTransport(fake.handler),
            models_url=REGISTRY,
            inference_url=GATEWAY,
            poll_interval=0.001,
            **overrides,
        )
        return CliRunner().invoke(cli, list(args), obj=state, input=input, env=env)

    return invoke
