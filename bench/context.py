"""What the benchmarks share in one run: a scratch directory and lazily started servers.

Starting Redis, the hub stand-in and the registry once per run (not once per benchmark) keeps
``make bench`` bounded; everything started here is stopped when the run ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


class Context:
    """Scratch space, repetition count and shared servers of one ``bench.run``."""

    def __init__(self, reps: int = 3) -> None:
        self.reps = reps
        self.workdir = Path(tempfile.mkdtemp(prefix="llf-bench-"))
        self.keep = bool(os.environ.get("LLF_BENCH_KEEP"))
        self._stack = contextlib.ExitStack()
        self._shared: dict[str, Any] = {}

    def path(self, *parts: str) -> Path:
        target = self.workdir.joinpath(*parts)
        target.mkdir(parents=True, exist_ok=True)
        return target

    def shared(self, key: str, factory: Callable[[contextlib.ExitStack], T]) -> T:
        """The server ``key``, started by ``factory`` on first use and stopped at the end of the run."""
        if key not in self._shared:
            self._shared[key] = factory(self._stack)
        return self._shared[key]  # type: ignore[no-any-return]

    def release(self, key: str) -> None:
        """Forget a shared server (its stop still runs at the end)."""
        self._shared.pop(key, None)

    def __enter__(self) -> Context:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._stack.close()
        finally:
            if self.keep:
                print(f"bench: scratch kept in {self.workdir}")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
