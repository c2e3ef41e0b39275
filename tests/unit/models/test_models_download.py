"""The resumable, verifying downloader against an in-memory HTTP server (httpx2.MockTransport)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from llf_models.download import Downloader, Target
from llf_models.errors import ChecksumMismatch, CorruptFile, JobCanceled, PartialLost
from llf_models.hub import HubAccessDenied, HubNotFound, HubUnavailable

DATA = bytes(range(256)) * 1024  # 256 KiB
SHA = hashlib.sha256(DATA).hexdigest()
GIT = hashlib.sha1(b"blob %d\0" % len(DATA) + DATA).hexdigest()


class Server:
    """Serves ``DATA`` with Range support; faults are switched on per test."""

    def __init__(self, data: bytes = DATA) -> None:
        self.data = data
        self.requests: list[httpx2.Request] = []
        self.ignore_range = False
        self.cut_after: list[int] = []  # bytes after which the next responses break
        self.statuses: list[int] = []
        self.piece = 16 * 1024

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if self.statuses:
            status = self.statuses.pop(0)
            return httpx2.Response(status, headers={"X-Error-Code": "EntryNotFound"} if status == 404 else {})
        start = 0
        match = re.match(r"bytes=(\d+)-", request.headers.get("range", ""))
        headers = {}
        status = 200
        if match and not self.ignore_range:
            start = int(match.group(1))
            if start >= len(self.data):
                return httpx2.Response(416, headers={"Content-Range": f"bytes */{len(self.data)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(self.data) - 1}/{len(self.data)}"
        body = self.data[start:]
        cut = self.cut_after.pop(0) if self.cut_after else None
        return httpx2.Response(status, headers=headers, stream=Pieces(body, self.piece, cut))


class Pieces(httpx2.SyncByteStream):
    def __init__(self, body: bytes, piece: int, cut: int | None) -> None:
        self.body, self.piece, self.cut = body, piece, cut

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        while sent < len(self.body):
            if self.cut is not None and sent >= self.cut:
                raise httpx2.ReadError("connection reset by peer")
            chunk = self.body[sent : sent + self.piece]
            sent += len(chunk)
            yield chunk


@pytest.fixture
def server() -> Server:
    return Server()


def make(server: Server, **kwargs: object) -> Downloader:
    client = httpx2.Client(transport=httpx2.MockTransport(server.handler))
    return Downloader(client, {"authorization": "Bearer hf_x", "user-agent": "t"}, sleep=lambda s: None, **kwargs)  # type: ignore[arg-type]


def target(tmp_path: Path, **overrides: object) -> Target:
    values: dict[str, object] = {
        "name": "model.safetensors",
        "url": "http://hub/o/n/resolve/sha/model.safetensors",
        "size": len(DATA),
        "partial": tmp_path / "blobs" / f"{SHA}.incomplete",
        "final": tmp_path / "blobs" / SHA,
        "sha256": SHA,
    }
    values.update(overrides)
    return Target(**values)  # type: ignore[arg-type]


def test_a_file_is_downloaded_hashed_and_renamed_into_place(tmp_path: Path, server: Server) -> None:
    seen: list[tuple[int, bool]] = []
    downloader = make(server, on_bytes=lambda n, fresh: seen.append((n, fresh)))
    t = target(tmp_path)
    assert downloader.fetch(t) == SHA
    assert t.final.read_bytes() == DATA and not t.partial.exists()
    assert sum(n for n, _ in seen) == len(DATA) and all(fresh for _, fresh in seen)
    request = server.requests[0]
    assert "range" not in request.headers and request.headers["accept-encoding"] == "identity"
    assert request.headers["authorization"] == "Bearer hf_x"


def test_a_partial_file_is_resumed_with_a_range_request(tmp_path: Path, server: Server) -> None:
    t = target(tmp_path)
    t.partial.parent.mkdir(parents=True)
    t.partial.write_bytes(DATA[:100_000])
    seen: list[tuple[int, bool]] = []
    assert make(server, on_bytes=lambda n, fresh: seen.append((n, fresh))).fetch(t) == SHA
    assert server.requests[0].headers["range"] == "bytes=100000-"
    assert sum(n for n, fresh in seen if not fresh) == 100_000
    assert sum(n for n, fresh in seen if fresh) == len(DATA) - 100_000


def test_an_interrupted_stream_resumes_where_it_broke(tmp_path: Path, server: Server) -> None:
    server.cut_after = [64 * 1024, 64 * 1024]
    downloader = make(server)
    assert downloader.fetch(target(tmp_path)) == SHA
    assert [r.headers.get("range") for r in server.requests] == [None, "bytes=65536-", "bytes=131072-"]
    assert downloader.served_bytes == len(DATA)


def test_a_server_ignoring_range_makes_the_download_start_over(tmp_path: Path, server: Server) -> None:
    t = target(tmp_path)
    t.partial.parent.mkdir(parents=True)
    t.partial.write_bytes(b"\x00" * 1000)  # wrong bytes: the full body replaces them
    server.ignore_range = True
    assert make(server).fetch(t) == SHA


def test_a_partial_larger_than_the_file_is_discarded(tmp_path: Path, server: Server) -> None:
    t = target(tmp_path)
    t.partial.parent.mkdir(parents=True)
    t.partial.write_bytes(DATA + b"extra")
    assert make(server).fetch(t) == SHA
    assert "range" not in server.requests[0].headers


def test_a_complete_partial_needs_no_request(tmp_path: Path, server: Server) -> None:
    t = target(tmp_path)
    t.partial.parent.mkdir(parents=True)
    t.partial.write_bytes(DATA)
    assert make(server).fetch(t) == SHA
    assert server.requests == []  # nothing left to fetch: no request at all


def test_a_sha256_mismatch_names_the_file_and_both_digests_and_drops_the_partial(
    tmp_path: Path, server: Server
) -> None:
    bad = bytearray(DATA)
    bad[10] ^= 1
    server.data = bytes(bad)
    t = target(tmp_path)
    with pytest.raises(ChecksumMismatch) as info:
        make(server).fetch(t)
    assert (
        info.value.detail
        == f"model.safetensors: sha256 mismatch: expected {SHA}, got {hashlib.sha256(bad).hexdigest()}"
    )
    assert not t.partial.exists() and not t.final.exists()


def test_small_files_are_checked_against_the_git_blob_id(tmp_path: Path, server: Server) -> None:
    t = target(tmp_path, sha256=None, git_sha1=GIT, final=tmp_path / "blobs" / GIT)
    assert make(server).fetch(t) == SHA
    wrong = target(tmp_path / "2", sha256=None, git_sha1="0" * 40)
    with pytest.raises(ChecksumMismatch, match="git blob sha1 mismatch"):
        make(server).fetch(wrong)


def test_more_bytes_than_announced_is_a_corrupt_file(tmp_path: Path, server: Server) -> None:
    with pytest.raises(CorruptFile, match="more than the expected"):
        make(server).fetch(target(tmp_path, size=1000))


def test_hub_errors_become_clear_errors_and_transient_ones_are_retried(tmp_path: Path, server: Server) -> None:
    server.statuses = [503, 429]
    assert make(server).fetch(target(tmp_path)) == SHA
    server.statuses = [404]
    with pytest.raises(HubNotFound, match="not found on the hub"):
        make(server).fetch(target(tmp_path / "a"))
    server.statuses = [403]
    with pytest.raises(HubAccessDenied, match="HF_TOKEN"):
        make(server).fetch(target(tmp_path / "b"))
    server.statuses = [500] * 3
    with pytest.raises(HubUnavailable, match="answered 500"):
        make(server, attempts=3).fetch(target(tmp_path / "c"))


def test_a_dead_connection_gives_up_after_the_configured_attempts(tmp_path: Path, server: Server) -> None:
    server.cut_after = [0, 0]
    with pytest.raises(HubUnavailable, match=r"cannot download model\.safetensors: ReadError"):
        make(server, attempts=2).fetch(target(tmp_path))


def test_a_stop_request_aborts_and_keeps_the_partial(tmp_path: Path, server: Server) -> None:
    calls = []

    def stop() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise JobCanceled("canceled on request")

    t = target(tmp_path)
    with pytest.raises(JobCanceled):
        make(server, check_stop=stop).fetch(t)
    assert t.partial.stat().st_size == 3 * server.piece and not t.final.exists()


def test_the_token_is_not_sent_to_another_host(tmp_path: Path, server: Server) -> None:
    make(server).fetch(target(tmp_path, send_auth=False))
    assert "authorization" not in server.requests[0].headers


def test_an_empty_file_needs_no_request(tmp_path: Path, server: Server) -> None:
    empty = hashlib.sha256(b"").hexdigest()
    t = target(tmp_path, size=0, sha256=empty, final=tmp_path / "blobs" / empty)
    assert make(server).fetch(t) == empty and t.final.read_bytes() == b""
    assert server.requests == []


def test_a_wrong_content_range_is_retried(tmp_path: Path) -> None:
    calls = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request.headers.get("range"))
        if len(calls) == 1:
            return httpx2.Response(206, headers={"Content-Range": "bytes 0-9/10"}, content=b"x")
        start = int(request.headers["range"][6:-1])
        return httpx2.Response(
            206, headers={"Content-Range": f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"}, content=DATA[start:]
        )

    t = target(tmp_path)
    t.partial.parent.mkdir(parents=True)
    t.partial.write_bytes(DATA[:10])
    downloader = Downloader(httpx2.Client(transport=httpx2.MockTransport(handler)), {}, sleep=lambda s: None)
    assert downloader.fetch(t) == SHA and calls == ["bytes=10-", "bytes=10-"]


# ------------------------------------------------------------------ short writes, private partials
class ShortWrites:
    """An unbuffered file whose ``write`` takes at most ``limit`` bytes per call (a filling disk)."""

    def __init__(self, path: Path, limit: int, lose: bool = False) -> None:
        self.raw = path.open("r+b", buffering=0)
        self.limit, self.lose = limit, lose

    def write(self, data: bytes) -> int:
        if self.lose:  # claims everything, keeps a part: what an unchecked short write leaves on disk
            self.raw.write(bytes(data)[: self.limit])
            return len(data)
        return self.raw.write(bytes(data)[: self.limit]) or 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.raw, name)

    def __enter__(self) -> ShortWrites:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()


def test_short_writes_are_continued_until_each_piece_is_on_disk(tmp_path: Path, server: Server) -> None:
    t = target(tmp_path)
    downloader = make(server, opener=lambda path: ShortWrites(path, limit=1000))
    assert downloader.fetch(t) == SHA
    assert t.final.read_bytes() == DATA


def test_a_file_shorter_on_disk_than_what_was_hashed_is_never_renamed_in(tmp_path: Path, server: Server) -> None:
    t = target(tmp_path)
    downloader = make(server, opener=lambda path: ShortWrites(path, limit=1000, lose=True))
    with pytest.raises(CorruptFile, match="on disk"):
        downloader.fetch(t)
    assert not t.final.exists()
    assert list(t.partial.parent.glob("*.incomplete")) == []


def test_the_final_link_never_replaces_a_blob_another_writer_put_there(tmp_path: Path, server: Server) -> None:
    t = target(tmp_path)
    t.final.parent.mkdir(parents=True)
    t.final.write_bytes(DATA)
    before = t.final.stat().st_ino
    assert make(server).fetch(t) == SHA
    assert t.final.stat().st_ino == before
    assert list(t.partial.parent.glob("*.incomplete")) == []


def test_a_writer_whose_partial_was_taken_over_cannot_publish_it(tmp_path: Path, server: Server) -> None:
    """The new writer copies what is on disk into a file of its own; the old one writes into the void."""
    t = target(tmp_path)
    server.ignore_range = True  # the new writer starts over at byte 0 while the old one is far along
    pieces = []

    def old_writer_paused() -> None:
        pieces.append(1)
        if len(pieces) == 10:  # the old writer is paused here; a new writer takes the download over
            assert make(server).fetch(t) == SHA

    with pytest.raises(PartialLost):
        make(server, check_stop=old_writer_paused).fetch(t)
    assert t.final.read_bytes() == DATA
    assert list(t.partial.parent.glob("*.incomplete")) == []


def test_the_stable_partial_name_is_what_a_resume_finds(tmp_path: Path, server: Server) -> None:
    server.cut_after = [100_000, 0, 0]  # the first writer gets 100 kB, then the connection dies for good
    with pytest.raises(HubUnavailable):
        make(server, attempts=2).fetch(target(tmp_path))
    t = target(tmp_path)
    kept = t.partial.stat().st_size
    assert kept >= 100_000
    server.cut_after = []
    assert make(server).fetch(t) == SHA
    assert server.requests[-1].headers["range"] == f"bytes={kept}-"
    assert list(t.partial.parent.glob("*.incomplete")) == []
