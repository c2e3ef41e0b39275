"""``llf --help`` starts fast because it imports click and nothing heavy (the timing is bench #7)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LLF = Path(sys.executable).parent / "llf"
HEAVY = ("rich", "httpx", "httpx_sse", "prompt_toolkit", "pydantic", "pydantic_settings", "llf_common.settings")


def imported_modules(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(LLF), *args],
        capture_output=True, text=True, check=True, timeout=60, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    rows = [line.split("|")[-1] for line in done.stderr.splitlines() if line.startswith("import time:")]
    return {row.strip() for row in rows}


def test_help_imports_nothing_heavy() -> None:
    modules = imported_modules("--help")
    assert "click" in modules
    assert not [name for name in HEAVY if name in modules]


def test_subcommand_help_imports_nothing_heavy() -> None:
    for command in (["chat", "--help"], ["models", "ls", "--help"], ["pull", "--help"]):
        assert not [name for name in HEAVY if name in imported_modules(*command)]
