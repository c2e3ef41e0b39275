"""Telling 'no hub reachable' (demo fallback) from real pull errors, and the progress line."""

from __future__ import annotations

from scripts.up.stack import looks_unreachable, progress_line


def test_connection_failures_count_as_unreachable():
    assert looks_unreachable(502, "cannot reach the hub at http://127.0.0.1:1: connection refused")
    assert looks_unreachable(503, "hub unreachable: Name or service not known")
    assert looks_unreachable(504, "")
    assert looks_unreachable(None, "ConnectError: [Errno 111] Connection refused")


def test_missing_or_gated_repos_are_errors_not_a_reason_for_the_demo():
    assert not looks_unreachable(404, "repo Qwen/Nope not found on the hub")
    assert not looks_unreachable(401, "gated repo: set HF_TOKEN (connection ok)")
    assert not looks_unreachable(422, "repo id must look like 'owner/name'")


def test_progress_line_shows_bytes_rate_and_files():
    job = {"kind": "pull", "repo": "a/b", "state": "started",
           "progress": {"phase": "download", "bytes_done": 500_000, "bytes_total": 1_000_000,
                        "rate_bps": 250_000.0, "files_done": 1, "files_total": 4}}  # fmt: skip
    line = progress_line(job)
    assert "download" in line and "500.0 KB / 1.0 MB (50%)" in line and "250.0 KB/s" in line and "files 1/4" in line
