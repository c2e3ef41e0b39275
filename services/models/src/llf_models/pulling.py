"""The pull job: pre-flight, then every file of repo@sha into the store, verified, then the manifest.

Order matters: ``config.json`` first (the architecture check warns before the big bytes move),
small files next, weights last. A blob already complete on disk is never fetched again; a
partial one is resumed (``download.py``). The manifest is written only after every file hashed
right and the safetensors headers and config checked out, so a model is never listed as ready
with a bad file.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llf_common.wire import FileEntry
from redis.exceptions import RedisError

from llf_models.download import Downloader, Target
from llf_models.errors import CorruptFile, DiskFull
from llf_models.hub import HubClient, RemoteFile, RemoteRepo
from llf_models.progress import Reporter
from llf_models.scope import JobScope
from llf_models.state import release_space, reserve_space
from llf_models.store import Manifest, Store, now
from llf_models.verify import architecture_of, architecture_warning, check_config, hash_file, summarize

log = logging.getLogger(__name__)


def run_pull(
    scope: JobScope,
    hub: HubClient,
    client: Any,
    repo: str,
    revision: str,
    sha: str,
    allow_patterns: list[str] | None = None,
    ignore_patterns: list[str] | None = None,
) -> dict[str, Any]:
    store, rep, settings = scope.store, scope.reporter, scope.settings
    rep.phase("preflight")
    remote = hub.resolve(repo, sha, allow_patterns, ignore_patterns)
    files = order_files(remote.files)
    needed = sum(f.size - bytes_on_disk(store, repo, f) for f in files)
    with reserved(scope, needed), scope.lock(repo) as lock:
        rep.phase("download", bytes_total=remote.total_bytes, files_total=len(files), bytes_done=0, files_done=0)

        def check_stop() -> None:
            rep.check_cancel()
            lock.ensure_held()

        downloader = Downloader(
            client,
            hub.headers(),
            timeout=settings.hub_timeout_s,
            attempts=settings.download_attempts,
            on_bytes=rep.advance,
            check_stop=check_stop,
            fence=lock.check,
        )
        entries = []
        for remote_file in files:
            rep.file_started(remote_file.path)
            digest = fetch_file(store, hub, downloader, remote, remote_file, rep)
            lock.check()
            store.link_snapshot(repo, sha, remote_file.path, remote_file.etag)
            entries.append(FileEntry(path=remote_file.path, size=remote_file.size, sha256=digest, lfs=remote_file.lfs))
            rep.file_done()
            if remote_file.path == "config.json":
                arch_warning = architecture_warning(_architecture(store.snapshot_file(repo, sha, "config.json")))
                if arch_warning:
                    rep.warn(arch_warning)
        rep.phase("verify")
        manifest = build_manifest(store, repo, revision, sha, "hub", entries, {f.path: f.etag for f in files}, rep)
        lock.check()
        store.write_ref(repo, revision, sha)
        lock.check()
        store.write_manifest(manifest)
        scope.index.put(manifest)
        rep.phase("done")
    log.info("pulled", extra={"repo": repo, "sha": sha, "bytes": manifest.total_bytes})
    return {"model": store.info(manifest).model_dump(mode="json")}


def order_files(files: tuple[RemoteFile, ...]) -> list[RemoteFile]:
    """config.json first (architecture check before the big bytes), then small files, then large."""
    return sorted(files, key=lambda f: (f.path != "config.json", f.lfs, f.size, f.path))


def bytes_on_disk(store: Store, repo: str, remote_file: RemoteFile) -> int:
    blob = store.blob_path(repo, remote_file.etag)
    with contextlib.suppress(FileNotFoundError):
        if blob.stat().st_size == remote_file.size:
            return remote_file.size
    with contextlib.suppress(FileNotFoundError):
        return min(store.partial_path(repo, remote_file.etag).stat().st_size, remote_file.size)
    return 0


def check_disk(store: Store, needed: int, margin: int, others: int = 0) -> None:
    free = store.free_bytes()
    if free < needed + margin + others:
        held = f", {human(others)} of it reserved by other running pulls" if others else ""
        raise DiskFull(
            f"not enough disk space in {store.root}: need {human(needed)} plus a {human(margin)} margin,"
            f" {human(free)} free{held}"
        )


@contextlib.contextmanager
def reserved(scope: JobScope, needed: int) -> Iterator[None]:
    """Hold ``needed`` bytes of the disk for this pull while it runs (checked against other pulls' holds)."""
    margin = scope.settings.disk_margin_bytes
    if scope.job is None or scope.redis is None:  # run by hand: no other pulls to know about
        check_disk(scope.store, needed, margin)
        yield
        return
    ok, others = reserve_space(scope.redis, scope.job.id, needed, margin, scope.store.free_bytes())
    if not ok:
        check_disk(scope.store, needed, margin, others)  # raises DiskFull with the figures
    try:
        yield
    finally:
        with contextlib.suppress(RedisError):
            release_space(scope.redis, scope.job.id)


def human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def fetch_file(
    store: Store, hub: HubClient, downloader: Downloader, remote: RemoteRepo, f: RemoteFile, rep: Reporter
) -> str:
    """Make ``blobs/<etag>`` hold the verified file; return its sha256. Complete blobs are not refetched."""
    blob = store.blob_path(remote.repo, f.etag)
    if blob.is_file() and blob.stat().st_size == f.size:
        if f.sha256 is not None:  # named by its sha256, and only renamed into place once verified
            rep.advance(f.size, False)
            return f.sha256
        hasher = hash_file(blob, f.size)
        if hasher.git_sha1 is not None and hasher.git_sha1.hexdigest() == f.etag:
            rep.advance(f.size, False)
            return hasher.sha256.hexdigest()
        downloader.fence()
        blob.unlink()
    location = hub.locate(remote.repo, remote.sha, f.path)
    if location.size is not None and location.size != f.size:
        raise CorruptFile(f.path, f"the hub lists {f.size} bytes but serves {location.size}")
    target = Target(
        name=f.path,
        url=location.url,
        size=f.size,
        partial=store.partial_path(remote.repo, f.etag),
        final=blob,
        sha256=f.sha256,
        git_sha1=None if f.lfs else f.etag,
        send_auth=location.same_host,
    )
    return downloader.fetch(target)


def _architecture(config_path: Path) -> str | None:
    return architecture_of(check_config(config_path))


def build_manifest(
    store: Store,
    repo: str,
    revision: str,
    sha: str,
    source: str,
    entries: list[FileEntry],
    blobs: dict[str, str],
    rep: Reporter,
) -> Manifest:
    summary = summarize({e.path: store.snapshot_file(repo, sha, e.path) for e in entries})
    warnings = list(dict.fromkeys([*rep.warnings, *summary.warnings]))
    return Manifest(
        repo=repo,
        revision=revision,
        sha=sha,
        source=source,  # type: ignore[arg-type]
        files=entries,
        blobs=blobs,
        total_bytes=sum(e.size for e in entries),
        verified_at=now(),
        **summary.model_dump(exclude={"warnings"}),
        warnings=warnings,
    )
