"""Hashing: is every file byte for byte what the hub published (sha256, and git's blob sha1)?

Downloads hash while the bytes arrive (``Hasher``); verify jobs and resumed downloads hash files
already on disk (``hash_file``, ``compare_files``). Whether those bytes form a loadable model
is the other half of a verification, in ``structure``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

READ_BYTES = 1 << 20


class Hasher:
    """sha256 plus git's blob sha1, fed once as bytes arrive (git's needs the size up front)."""

    def __init__(self, size: int | None = None) -> None:
        self.size = size
        self.reset()

    def reset(self) -> None:
        self.sha256 = hashlib.sha256()
        self.git_sha1 = (
            hashlib.sha1(f"blob {self.size}\0".encode(), usedforsecurity=False) if self.size is not None else None
        )
        self.count = 0

    def update(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        if self.git_sha1 is not None:
            self.git_sha1.update(data)
        self.count += len(data)


def hash_file(path: Path, size: int | None = None, on_bytes: Callable[[int], None] | None = None) -> Hasher:
    """Hash a whole file (used on resume and by verify jobs, never right after a download)."""
    hasher = Hasher(size)
    with path.open("rb") as handle:
        while chunk := handle.read(READ_BYTES):
            hasher.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return hasher


@dataclass
class FileProblem:
    path: str
    problem: str
    expected: str | None = None
    actual: str | None = None

    def describe(self) -> str:
        if self.expected is not None:
            return f"{self.path}: {self.problem}: expected {self.expected}, got {self.actual}"
        return f"{self.path}: {self.problem}"


def compare_files(
    entries: Iterable[tuple[str, Path, int, str | None]], on_bytes: Callable[[int], None] | None = None
) -> list[FileProblem]:
    """Re-hash ``(name, path, size, sha256)`` entries; report missing, resized and corrupted ones."""
    problems: list[FileProblem] = []
    for name, path, size, sha256 in entries:
        if not path.exists():
            problems.append(FileProblem(name, "missing"))
            continue
        actual_size = path.stat().st_size
        if actual_size != size:
            problems.append(FileProblem(name, "size mismatch", str(size), str(actual_size)))
            continue
        digest = hash_file(path, on_bytes=on_bytes).sha256.hexdigest()
        if sha256 is not None and digest != sha256:
            problems.append(FileProblem(name, "sha256 mismatch", sha256, digest))
    return problems
