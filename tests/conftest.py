"""Marks every test by the folder it lives in: tests/unit -> unit, tests/integration -> integration, ...

Also: an e2e session that CI starts while its images are still building (.ci/run sets
``LLF_E2E_IMAGES_DONE``) waits for that build after collection, outside any test's timeout.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.net import wait_for

_KINDS = ("unit", "integration", "e2e", "soak")
IMAGES_TIMEOUT_S = float(os.environ.get("LLF_E2E_IMAGES_TIMEOUT", "3600"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        try:
            kind = Path(str(item.fspath)).relative_to(root).parts[0]
        except ValueError:
            continue
        if kind in _KINDS:
            item.add_marker(getattr(pytest.mark, kind))


def pytest_collection_finish(session: pytest.Session) -> None:
    done = os.environ.get("LLF_E2E_IMAGES_DONE")
    if not done or not any(item.get_closest_marker("e2e") for item in session.items):
        return
    exit_code = wait_for_image_build(Path(done), Path(os.environ.get("LLF_E2E_IMAGES_LOG", "")))
    if exit_code != 0:
        pytest.exit(f"the e2e images did not build (exit {exit_code}); see the log above", returncode=1)


def wait_for_image_build(done: Path, log: Path) -> int:
    """The exit code the image build wrote to ``done``, once it has; its log's tail when it failed."""
    print(f"\ne2e: waiting (up to {IMAGES_TIMEOUT_S:.0f} s) for the image build ({log})", flush=True)
    wait_for(done.exists, IMAGES_TIMEOUT_S, lambda: f"the image build to end; log tail:\n{_tail(log)}", interval=2)
    exit_code = int(done.read_text().strip() or "1")
    if exit_code != 0:
        print(f"e2e: the image build failed (exit {exit_code}):\n{_tail(log)}", flush=True)
    return exit_code


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"
