"""A test's environment without the developer's: no ``LLF_*`` settings, keys or URLs from the shell.

Settings read the environment, so a variable left in the caller's shell would change what a test
builds; every suite's autouse ``clean_env`` fixture calls this.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

OWN_NAMES = frozenset({"HF_ENDPOINT", "HF_TOKEN", "REDIS_URL"})


def isolate_env(monkeypatch: pytest.MonkeyPatch, home: Path, prefixes: tuple[str, ...] = ("LLF_",)) -> None:
    """Unset every variable with one of ``prefixes`` and the Hub/Redis ones; ``LLF_HOME`` is ``home``."""
    for name in list(os.environ):
        if name.startswith(prefixes) or name in OWN_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("LLF_HOME", str(home))
