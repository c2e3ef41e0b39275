"""Resumable, verifying download of one file into the store.

Why our own loop: ``huggingface_hub`` writes to a process-unique temporary file, so a worker
that is SIGKILLed (or whose container dies) loses everything it fetched. Here the partial file
has a stable name (``blobs/<etag>.incomplete``), every byte is written through to the kernel as
it arrives (so a kill loses at most the piece in flight), and a restart continues with an HTTP
``Range`` request from the partial's length.

The sha256 (and, for small non-LFS files, git's blob sha1) is computed as bytes arrive; only
after a restart are the bytes already on disk read once to rebuild the hash state. A mismatch
deletes the partial and raises ``ChecksumMismatch`` naming the file and both digests; a
verified file is renamed into ``blobs/<etag>`` atomically.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub.utils import hf_raise_for_status

from llf_models.errors import ChecksumMismatch, CorruptFile
from llf_models.hub import HubUnavailable, translate
from llf_models.verify import READ_BYTES, Hasher

log = logging.getLogger(__name__)

CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


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
    just as often and raises to abort (cancel).
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
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.headers = headers
        self.timeout = httpx2.Timeout(timeout)
        self.attempts = attempts
        self.on_bytes = on_bytes
        self.check_stop = check_stop
        self.sleep = sleep
        self.served_bytes = 0  # bytes received over the network by this downloader (for tests/metrics)

    def fetch(self, target: Target) -> str:
        """Download (or finish downloading) ``target``; return its sha256 hex digest."""
        target.partial.parent.mkdir(parents=True, exist_ok=True)
        hasher = self._resume_state(target)
        failures = 0
        while hasher.count < target.size:
            before = hasher.count
            try:
                self._stream(target, hasher)
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
        return self._finish(target, hasher)

    def _resume_state(self, target: Target) -> Hasher:
        """Hash what a previous attempt (maybe another process) left in the partial file."""
        hasher = Hasher(target.size if target.git_sha1 else None)
        try:
            have = target.partial.stat().st_size
        except FileNotFoundError:
            target.partial.touch()
            return hasher
        if have > target.size:
            log.warning("partial larger than the file, starting over", extra={"file": target.name})
            os.truncate(target.partial, 0)
            return hasher
        with target.partial.open("rb") as handle:
            while chunk := handle.read(READ_BYTES):
                hasher.update(chunk)
                self.on_bytes(len(chunk), False)
        return hasher

    def _stream(self, target: Target, hasher: Hasher) -> None:
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
            if offset and response.status_code == 200:
                log.warning("server ignored Range, starting over", extra={"file": target.name})
                os.truncate(target.partial, 0)
                hasher.reset()
            elif offset:
                self._check_content_range(target, response.headers.get("Content-Range"), offset)
            # Unbuffered: each piece reaches the kernel before we ask for the next one.
            with target.partial.open("r+b", buffering=0) as out:
                out.seek(hasher.count)
                for piece in response.iter_bytes():
                    if not piece:
                        continue
                    self.served_bytes += len(piece)
                    if hasher.count + len(piece) > target.size:
                        self._discard(target)
                        raise CorruptFile(target.name, f"the hub sent more than the expected {target.size} bytes")
                    out.write(piece)
                    hasher.update(piece)
                    self.on_bytes(len(piece), True)
                    self.check_stop()
                os.fsync(out.fileno())

    @staticmethod
    def _check_content_range(target: Target, header: str | None, offset: int) -> None:
        match = CONTENT_RANGE.match(header or "")
        if match is None or int(match.group(1)) != offset:
            raise HubUnavailable(f"{target.name}: asked for bytes from {offset}, got Content-Range {header!r}")

    def _finish(self, target: Target, hasher: Hasher) -> str:
        digest = hasher.sha256.hexdigest()
        if hasher.count != target.size:
            self._discard(target)
            raise CorruptFile(target.name, f"expected {target.size} bytes, got {hasher.count}")
        if target.sha256 is not None and digest != target.sha256:
            self._discard(target)
            raise ChecksumMismatch(target.name, target.sha256, digest)
        if target.git_sha1 is not None and hasher.git_sha1 is not None:
            git_digest = hasher.git_sha1.hexdigest()
            if git_digest != target.git_sha1:
                self._discard(target)
                raise ChecksumMismatch(target.name, target.git_sha1, git_digest, algorithm="git blob sha1")
        os.replace(target.partial, target.final)
        fsync_dir(target.final.parent)
        return digest

    @staticmethod
    def _discard(target: Target) -> None:
        with contextlib.suppress(FileNotFoundError):
            target.partial.unlink()


def fsync_dir(path: Path) -> None:
    """Make a rename durable (best effort: not every filesystem allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
