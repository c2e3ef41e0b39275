"""The pytest plugin: ``pytest -p llf_testing`` (or installed: the ``pytest11`` entry point).

Fixtures: ``llf`` (session-scoped ``LlfContainer``, started once, stopped after the last test) and
``llf_openai`` (an ``openai.OpenAI`` client pointed at it). The model comes from ``--llf-model``,
else ``LLF_TEST_MODEL``, else ``demo``; the image from ``--llf-image``, else ``LLF_TEST_IMAGE``,
else the package's default. A project replaces the container class by overriding the
``llf_container_class`` fixture (its own subclass, or a fake in the plugin's tests).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import openai

DEFAULT_MODEL = "demo"


@dataclass(frozen=True)
class Options:
    """What the fixtures start: a model, an image (None = the package's choice), a start timeout."""

    model: str
    image: str | None
    timeout: float


def resolve_options(model: str | None, image: str | None, timeout: float | None, env: Mapping[str, str]) -> Options:
    """Command line first, then the environment, then the defaults."""
    return Options(
        model=model or env.get("LLF_TEST_MODEL") or DEFAULT_MODEL,
        image=image or env.get("LLF_TEST_IMAGE") or None,
        timeout=timeout if timeout is not None else float(env.get("LLF_TEST_TIMEOUT") or 600),
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llf", "llf-testing: a real OpenAI-compatible LLM in a container")
    group.addoption("--llf-model", default=None, help="model for the llf fixture (default LLF_TEST_MODEL or demo)")
    group.addoption("--llf-image", default=None, help="image for the llf fixture (default LLF_TEST_IMAGE or llf's)")
    group.addoption("--llf-timeout", type=float, default=None, help="seconds to wait for the first answer (600)")


@pytest.fixture(scope="session")
def llf_options(pytestconfig: pytest.Config) -> Options:
    import os

    return resolve_options(
        pytestconfig.getoption("--llf-model"),
        pytestconfig.getoption("--llf-image"),
        pytestconfig.getoption("--llf-timeout"),
        os.environ,
    )


@pytest.fixture(scope="session")
def llf_container_class() -> Any:
    """The class the ``llf`` fixture starts (override this fixture to use your own)."""
    from llf_testing.container import LlfContainer

    return LlfContainer


@pytest.fixture(scope="session")
def llf(llf_options: Options, llf_container_class: Any) -> Iterator[Any]:
    """One llf container for the whole session, answering chat completions before the first test."""
    container = llf_container_class(
        model=llf_options.model, image=llf_options.image, startup_timeout=llf_options.timeout
    )
    container.start()
    try:
        yield container
    finally:
        container.stop()


@pytest.fixture(scope="session")
def llf_openai(llf: Any) -> openai.OpenAI:
    """``openai.OpenAI`` pointed at the session's container; send ``model=llf.model``."""
    return llf.openai_client()  # type: ignore[no-any-return]
