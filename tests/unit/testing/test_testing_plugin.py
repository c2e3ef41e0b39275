"""The pytest plugin's options and fixtures, in a temporary project with a fake container class."""

from __future__ import annotations

import pytest
from llf_testing.plugin import resolve_options

pytest_plugins = ["pytester"]

FAKE = """
import pytest

STARTED = []


class FakeContainer:
    def __init__(self, model, image, startup_timeout):
        self.model, self.image, self.timeout = model, image, startup_timeout

    def start(self):
        STARTED.append(self)
        return self

    def stop(self):
        STARTED.remove(self)

    def openai_client(self):
        return ("client", self.model)


@pytest.fixture(scope="session")
def llf_container_class():
    return FakeContainer
"""

TESTS = """
from conftest import STARTED


def test_one(llf, llf_openai):
    assert llf_openai == ("client", llf.model)
    print(f"LLF model={llf.model} image={llf.image} timeout={llf.timeout}")


def test_two_shares_the_session_container(llf):
    assert STARTED == [llf]
"""


def test_command_line_wins_over_environment_over_defaults() -> None:
    env = {"LLF_TEST_MODEL": "org/env", "LLF_TEST_IMAGE": "img:env", "LLF_TEST_TIMEOUT": "30"}
    assert resolve_options("org/cli", "img:cli", 5.0, env) == resolve_options("org/cli", "img:cli", 5.0, {})
    options = resolve_options(None, None, None, env)
    assert (options.model, options.image, options.timeout) == ("org/env", "img:env", 30.0)
    default = resolve_options(None, None, None, {})
    assert (default.model, default.image, default.timeout) == ("demo", None, 600.0)


def test_fixtures_start_one_container_per_session_from_the_options(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLF_TEST_MODEL", "org/from-env")
    pytester.makeconftest(FAKE)
    pytester.makepyfile(test_app=TESTS)
    result = pytester.runpytest("-p", "llf_testing", "-s", "--llf-image", "team/llf:1", "--llf-timeout", "42")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*LLF model=org/from-env image=team/llf:1 timeout=42.0*"])


def test_llf_model_option_overrides_the_environment(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLF_TEST_MODEL", "org/from-env")
    pytester.makeconftest(FAKE)
    pytester.makepyfile(test_app=TESTS)
    result = pytester.runpytest("-p", "llf_testing", "-s", "--llf-model", "demo")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*LLF model=demo image=None timeout=600.0*"])
