"""Resumable, verifying download of one file into the store.

Why our own loop: ``huggingface_hub`` writes to a process-unique temporary file, so a worker
that is SIGKILLed (or whose container dies) loses everything it fetched. Here the partial file
has a stable name (``blobs/<etag>.incomplete``), every byte is written through to the kernel as
it arrives (so a kill loses at most the piece in flight), and a restart continues with an HTTP
``Range`` request from the partial's length.

Each writer owns its bytes: it writes a file of its own (``blobs/<etag>.<writer>.incomplete``)
to which the stable name is a second hard link. A writer that resumes copies what the stable
name holds into a new file of its own, then points the stable name at it, so a writer that was
presumed dead (paused past its lock) and wakes up writes into a file nobody will publish. Each
piece is written until all of it is on disk (a filling disk writes short), and before publishing
the file's size on disk must equal the expected size.

The sha256 (and, for small non-LFS files, git's blob sha1) is computed as bytes arrive; only
after a restart are the bytes already on disk read once to rebuild the hash state. A mismatch
deletes the partial and raises ``ChecksumMismatch`` naming the file and both digests; a
verified file is hard-linked into ``blobs/<etag>``, never over a blob that is already there
(another writer verified it first), and only while the repo lock is still ours (``fence``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx2
from huggingface_hub.utils import hf_raise_for_status

from llf_models.errors import ChecksumMismatch, CorruptFile, PartialLost
from llf_models.hub import HubUnavailable, translate
from llf_models.verify import READ_BYTES, Hasher

log = logging.getLogger(__name__)

CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
PARTIAL_SUFFIX = ".incomplete"
Opener = Callable[[Path], BinaryIO]


def open_partial(path: Path) -> BinaryIO:
    """Unbuffered: each piece reaches the kernel before we ask the network for the next one."""
    return path.open("r+b", buffering=0)


def write_fully(out: BinaryIO, data: bytes) -> None:
    """Write all of ``data``: a raw write may take only part of it (a filling disk, a signal)."""
    view = memoryview(data)
    while view:
        written = out.write(view)
        if not written:
            raise OSError(f"wrote nothing of {len(view)} bytes (disk full?)")
        view = view[written:]


@dataclass(frozen=True)
class Target:
    """One file to fetch: where from, where to, and what it must hash to."""

    name: str  # path in the repo, used in messages
    url: str
    size: int
    partial: Path
    final: Path
    sha256: str | None = None
    git_sha1: str | None = None
    send_auth: bool = True


class Downloader:
    """Fetches ``Target``s over one HTTP client, reporting bytes and honouring a stop check.

    ``on_bytes(n, fresh)`` is called for every piece written (``fresh`` is False for bytes found
    in a partial file; the caller rate-limits what it does with it); ``check_stop()`` is called
    just as often and raises to abort (cancel, lost lock); ``fence()`` is called right before a
    verified file is published and raises if this writer may no longer write (``LockLost``).
    """

    def __init__(
        self,
        client: httpx2.Client,
        headers: dict[str, str],
        *,
        timeout: float = 30.0,
        attempts: int = 5,
        on_bytes: Callable[[int, bool], None] = lambda n, fresh: None,
        check_stop: Callable[[], None] = lambda: None,
        fence: Callable[[], None] = lambda: None,
        sleep: Callable[[float], None] = time.sleep,
        opener: Opener = open_partial,
    ) -> None:
        self.client = client
        self.headers = headers
        self.timeout = httpx2.Timeout(timeout)
        self.attempts = attempts
        self.on_bytes = on_bytes
        self.check_stop = check_stop
        self.fence = fence
        self.sleep = sleep
        self.opener = opener
        self.served_bytes = 0  # bytes received over the network by this downloader (for tests/metrics)

    def fetch(self, target: Target) -> str:
        """Download (or finish downloading) ``target``; return its sha256 hex digest."""
        target.partial.parent.mkdir(parents=True, exist_ok=True)
        own = own_partial(target.partial)
        hasher = self._resume_state(target, own)
        failures = 0
        while hasher.count < target.size:
            before = hasher.count
            try:
                self._stream(target, own, hasher)
                if hasher.count >= target.size:
                    break
                raise HubUnavailable(f"{target.name}: connection closed after {hasher.count} of {target.size} bytes")
            except (httpx2.TransportError, HubUnavailable) as exc:
                failures = 0 if hasher.count > before else failures + 1
                if failures >= self.attempts:
                    if isinstance(exc, HubUnavailable):
                        raise
                    raise HubUnavailable(f"cannot download {target.name}: {type(exc).__name__}") from None
                log.warning(
                    "download interrupted, resuming",
                    extra={"file": target.name, "at": hasher.count, "error": type(exc).__name__},
                )
                self.sleep(min(2.0**failures, 10.0))
        return self._finish(target, own, hasher)

    def _resume_state(self, target: Target, own: Path) -> Hasher:
        """Start a file of our own, holding (and hashing) what a previous writer left under the stable name."""
        hasher = Hasher(target.size if target.git_sha1 else None)
        with own.open("xb") as out:
            try:
                source = target.partial.open("rb")
            except FileNotFoundError:
                source = None
            if source is not None:
                with source:
                    if os.fstat(source.fileno()).st_size > target.size:
                        log.warning("partial larger than the file, starting over", extra={"file": target.name})
                    else:
                        while chunk := source.read(min(READ_BYTES, target.size - hasher.count)):
                            write_fully(out, chunk)
                            hasher.update(chunk)
                            self.on_bytes(len(chunk), False)
            out.flush()
            os.fsync(out.fileno())
        take_over(target.partial, own)
        return hasher

    def _stream(self, target: Target, own: Path, hasher: Hasher) -> None:
        """One GET from ``hasher.count`` on, feeding ``hasher`` (reset if the server restarts at 0)."""
        headers = dict(self.headers)
        if not target.send_auth:
            headers.pop("authorization", None)
            headers.pop("Authorization", None)
        headers["Accept-Encoding"] = "identity"
        offset = hasher.count
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with self.client.stream("GET", target.url, headers=headers, timeout=self.timeout) as response:
            if response.status_code == 416 and offset == target.size:
                return
            if response.status_code >= 400:
                response.read()
                if response.status_code in (408, 429) or response.status_code >= 500:
                    raise HubUnavailable(f"{target.name}: the hub answered {response.status_code}")
                try:
                    hf_raise_for_status(response)
                except Exception as exc:
                    raise translate(exc, target.name) from None
            restart = bool(offset) and response.status_code == 200
            if restart:
                log.warning("server ignored Range, starting over", extra={"file": target.name})
                hasher.reset()
            elif offset:
                self._check_content_range(target, response.headers.get("Content-Range"), offset)
            try:
                out = self.opener(own)
            except FileNotFoundError:
                raise PartialLost(f"{target.name}: another writer took this download over") from None
            with out:
                if restart:
                    out.truncate(0)
                out.seek(hasher.count)
                for piece in response.iter_bytes():
                    if not piece:
                        continue
                    self.served_bytes += len(piece)
                    if hasher.count + len(piece) > target.size:
                        self._discard(target, own)
                        raise CorruptFile(target.name, f"the hub sent more than the expected {target.size} bytes")
                    write_fully(out, piece)
                    hasher.update(piece)
                    self.on_bytes(len(piece), True)
                    self.check_stop()
                os.fsync(out.fileno())

    @staticmethod
    def _check_content_range(target: Target, header: str | None, offset: int) -> None:
        match = CONTENT_RANGE.match(header or "")
        if match is None or int(match.group(1)) != offset:
            raise HubUnavailable(f"{target.name}: asked for bytes from {offset}, got Content-Range {header!r}")

    def _finish(self, target: Target, own: Path, hasher: Hasher) -> str:
        digest = hasher.sha256.hexdigest()
        if hasher.count != target.size:
            self._discard(target, own)
            raise CorruptFile(target.name, f"expected {target.size} bytes, got {hasher.count}")
        if target.sha256 is not None and digest != target.sha256:
            self._discard(target, own)
            raise ChecksumMismatch(target.name, target.sha256, digest)
        if target.git_sha1 is not None and hasher.git_sha1 is not None:
            git_digest = hasher.git_sha1.hexdigest()
            if git_digest != target.git_sha1:
                self._discard(target, own)
                raise ChecksumMismatch(target.name, target.git_sha1, git_digest, algorithm="git blob sha1")
        try:
            on_disk = own.stat().st_size
        except FileNotFoundError:
            raise PartialLost(f"{target.name}: another writer took this download over") from None
        if on_disk != target.size:
            self._discard(target, own)
            raise CorruptFile(target.name, f"{on_disk} bytes on disk, {target.size} expected (was the disk full?)")
        self.fence()
        publish(own, target.final)
        self._discard(target, own)
        fsync_dir(target.final.parent)
        return digest

    @staticmethod
    def _discard(target: Target, own: Path) -> None:
        """Remove our file, and the stable name if it still points at it (not another writer's file)."""
        with contextlib.suppress(FileNotFoundError):
            mine = own.stat()
            if same_file(target.partial, mine):
                target.partial.unlink()
        with contextlib.suppress(FileNotFoundError):
            own.unlink()


def own_partial(stable: Path) -> Path:
    """``<etag>.<writer>.incomplete`` beside ``<etag>.incomplete``: a name no other writer uses."""
    return stable.with_name(f"{stable.name.removesuffix(PARTIAL_SUFFIX)}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}")


def take_over(stable: Path, own: Path) -> None:
    """Point the stable name at ``own`` (atomically) and drop other writers' files of this blob."""
    tmp = own.with_name(f".{own.name}.link")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.link(own, tmp)
    os.replace(tmp, stable)
    prefix = stable.name.removesuffix(PARTIAL_SUFFIX) + "."
    for other in stable.parent.glob(prefix + "*" + PARTIAL_SUFFIX):
        if other not in (stable, own):
            with contextlib.suppress(FileNotFoundError):
                other.unlink()


def publish(own: Path, final: Path) -> None:
    """Hard-link ``own`` as ``final``; a blob already there was verified by its writer and stays."""
    try:
        os.link(own, final)
    except FileExistsError:
        log.info("blob already in place", extra={"blob": final.name})
    except OSError:  # a file system without hard links: a rename, unless the blob appeared
        if not final.exists():
            os.rename(own, final)


def same_file(path: Path, info: os.stat_result) -> bool:
    try:
        other = path.stat()
    except FileNotFoundError:
        return False
    return (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino)


def fsync_dir(path: Path) -> None:
    """Make a rename durable (best effort: not every filesystem allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
