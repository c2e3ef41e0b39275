"""Hashing: sha256 and git's blob sha1 of what was downloaded, and re-hashing files on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

from llf_models.verify.hashing import Hasher, compare_files, hash_file


def test_git_blob_sha1_matches_git_hash_object() -> None:
    hasher = Hasher(size=0)
    assert hasher.git_sha1 is not None and hasher.git_sha1.hexdigest() == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    hasher = Hasher(size=6)
    hasher.update(b"hello\n")
    assert hasher.git_sha1 is not None and hasher.git_sha1.hexdigest() == "ce013625030ba8dba906f756967f9e9ca394464a"
    hasher.reset()
    assert hasher.count == 0


def test_compare_files_reports_missing_resized_and_corrupted(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_bytes(b"abc")
    bad = tmp_path / "bad"
    bad.write_bytes(b"abd")
    digest = hashlib.sha256(b"abc").hexdigest()
    seen: list[int] = []
    problems = compare_files(
        [
            ("good", good, 3, digest),
            ("bad", bad, 3, digest),
            ("short", good, 4, digest),
            ("gone", tmp_path / "gone", 1, digest),
        ],
        on_bytes=seen.append,
    )
    assert [(p.path, p.problem) for p in problems] == [
        ("bad", "sha256 mismatch"),
        ("short", "size mismatch"),
        ("gone", "missing"),
    ]
    assert (
        problems[0].describe() == f"bad: sha256 mismatch: expected {digest}, got {hashlib.sha256(b'abd').hexdigest()}"
    )
    assert problems[2].describe() == "gone: missing"
    assert sum(seen) == 6
    assert hash_file(good).sha256.hexdigest() == digest
