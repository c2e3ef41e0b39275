"""RQ job functions: pull, verify, import. Plain arguments in, a JSON-able dict out.

The worker imports this module by name (``llf_models.jobs.pull``); each function builds what
it needs from the settings and the current RQ job, so a job can also be run by hand
(``pull("owner/name", "main", sha)``) in a shell or a test. Failures end up in the job as
``meta["error"]`` (one readable line, never the token); failures a retry cannot fix turn off
the job's remaining RQ retries, everything else (a killed worker, a flaky network) is retried.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llf_common.errors import InsufficientStorage, LLFError, NotFound
from llf_common.wire import FileEntry
from redis import Redis
from rq.job import Job, get_current_job

from llf_models.download import Downloader, Target
from llf_models.errors import CorruptFile, JobCanceled, Permanent
from llf_models.hub import HubClient, RemoteFile, RemoteRepo
from llf_models.progress import Reporter
from llf_models.settings import ModelsSettings, get_settings
from llf_models.state import ModelIndex, RepoLock
from llf_models.store import Manifest, Store, now, safe_relpath
from llf_models.verify import architecture_warning, check_config, compare_files, hash_file, summarize

log = logging.getLogger(__name__)


class DiskFull(InsufficientStorage, Permanent):
    pass


class NotFoundPermanent(NotFound, Permanent):
    pass


class VerifyFailed(LLFError, Permanent):
    status_code = 409
    code = "verify_failed"


# --------------------------------------------------------------------------- scope
@dataclass
class JobScope:
    """What one job run needs; built from the current RQ job (or standalone)."""

    settings: ModelsSettings
    store: Store
    redis: Redis
    reporter: Reporter
    holder: str
    job: Job | None = None
    index: ModelIndex = field(init=False)

    def __post_init__(self) -> None:
        self.index = ModelIndex(self.redis, self.store)

    def lock(self, repo: str) -> RepoLock:
        return RepoLock(
            self.redis,
            repo,
            self.holder,
            ttl=self.settings.lock_ttl_s,
            wait=self.settings.lock_wait_s,
            on_wait=self.reporter.check_cancel,
            announce=self.job is None,
        )


@contextlib.contextmanager
def job_scope(settings: ModelsSettings | None = None, redis: Redis | None = None) -> Iterator[JobScope]:
    settings = settings or get_settings()
    job = get_current_job()
    if redis is None:
        redis = job.connection if job is not None else Redis.from_url(settings.redis_url)
    holder = os.environ.get("RQ_WORKER_ID") or f"local-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    if job is not None:
        job.meta.pop("error", None)
        job.meta["attempts"] = int(job.meta.get("attempts", 0)) + 1
        job.save_meta()
    reporter = Reporter(job, redis, interval=settings.progress_interval_s)
    scope = JobScope(settings, Store(settings.models_path), redis, reporter, holder, job)
    try:
        yield scope
    except BaseException as exc:
        message = redact(describe(exc), settings)
        log.warning("job failed", extra={"job": job.id if job else None, "error": message})
        if job is not None:
            job.meta["error"] = message
            job.meta["canceled"] = isinstance(exc, JobCanceled)
            job.save_meta()
            if isinstance(exc, Permanent):
                job.retries_left = 0  # the worker's failure handler reads this: no retry
        raise


def describe(exc: BaseException) -> str:
    """One line for a person: our errors say it themselves, others get their type."""
    if isinstance(exc, LLFError):
        return exc.detail
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def redact(text: str, settings: ModelsSettings) -> str:
    token = settings.hf_token.get_secret_value() if settings.hf_token else ""
    return text.replace(token, "***") if token else text


# --------------------------------------------------------------------------- job functions
def pull(
    repo: str,
    revision: str,
    sha: str,
    allow_patterns: list[str] | None = None,
    ignore_patterns: list[str] | None = None,
) -> dict[str, Any]:
    """Download ``repo`` at commit ``sha`` into the store, verify it, write its manifest."""
    with job_scope() as scope:
        settings = scope.settings
        hub = HubClient(settings.hf_endpoint, settings.hf_token, timeout=settings.hub_timeout_s)
        from huggingface_hub.utils import get_session

        return run_pull(scope, hub, get_session(), repo, revision, sha, allow_patterns, ignore_patterns)


def verify(repo: str) -> dict[str, Any]:
    """Re-hash every file of a stored model against its manifest."""
    with job_scope() as scope:
        return run_verify(scope, repo)


def import_dir(path: str, name: str, link: bool = True) -> dict[str, Any]:
    """Bring a local model directory into the store under ``name``."""
    with job_scope() as scope:
        return run_import(scope, path, name, link)


# --------------------------------------------------------------------------- pull
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
    check_disk(store, needed, settings.disk_margin_bytes)
    with scope.lock(repo):
        rep.phase("download", bytes_total=remote.total_bytes, files_total=len(files), bytes_done=0, files_done=0)
        downloader = Downloader(
            client,
            hub.headers(),
            timeout=settings.hub_timeout_s,
            attempts=settings.download_attempts,
            on_bytes=rep.advance,
            check_stop=rep.check_cancel,
        )
        entries = []
        for remote_file in files:
            rep.file_started(remote_file.path)
            digest = fetch_file(store, hub, downloader, remote, remote_file, rep)
            store.link_snapshot(repo, sha, remote_file.path, remote_file.etag)
            entries.append(FileEntry(path=remote_file.path, size=remote_file.size, sha256=digest, lfs=remote_file.lfs))
            rep.file_done()
            if remote_file.path == "config.json":
                arch_warning = architecture_warning(_architecture(store.snapshot_file(repo, sha, "config.json")))
                if arch_warning:
                    rep.warn(arch_warning)
        rep.phase("verify")
        manifest = _manifest(store, repo, revision, sha, "hub", entries, {f.path: f.etag for f in files}, rep)
        store.write_ref(repo, revision, sha)
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


def check_disk(store: Store, needed: int, margin: int) -> None:
    free = store.free_bytes()
    if free < needed + margin:
        raise DiskFull(
            f"not enough disk space in {store.root}: need {human(needed)} plus a {human(margin)} margin,"
            f" {human(free)} free"
        )


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
    from llf_models.verify import architecture_of

    return architecture_of(check_config(config_path))


def _manifest(
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
        architecture=summary.architecture,
        architecture_supported=summary.architecture_supported,
        params=summary.params,
        dtype=summary.dtype,
        weight_bytes=summary.weight_bytes,
        context_length=summary.context_length,
        warnings=warnings,
    )


# --------------------------------------------------------------------------- verify
def run_verify(scope: JobScope, repo: str) -> dict[str, Any]:
    store, rep = scope.store, scope.reporter
    manifest = store.read_manifest(repo)
    if manifest is None:
        raise NotFoundPermanent(f"model {repo} not found")
    with scope.lock(repo):
        rep.phase("verify", bytes_total=manifest.total_bytes, files_total=len(manifest.files))
        problems = []
        for entry in manifest.files:
            rep.file_started(entry.path)
            path = store.snapshot_file(repo, manifest.sha, entry.path)
            problems += compare_files([(entry.path, path, entry.size, entry.sha256)], on_bytes=rep.advance)
            rep.file_done()
        if not problems:
            try:
                summarize({e.path: store.snapshot_file(repo, manifest.sha, e.path) for e in manifest.files})
            except CorruptFile as exc:
                from llf_models.verify import FileProblem

                problems.append(FileProblem(exc.path, exc.reason))
        if problems:
            described = [p.describe() for p in problems]
            for problem in problems:  # drop bad blobs so the next pull fetches them again
                blob_name = manifest.blobs.get(problem.path)
                if blob_name and problem.problem != "missing":
                    with contextlib.suppress(FileNotFoundError):
                        store.blob_path(repo, blob_name).unlink()
            manifest.verified_at = None
            manifest.warnings = described
            store.write_manifest(manifest)
            scope.index.put(manifest)
            if scope.job is not None:
                scope.job.meta["result"] = {"ok": False, "problems": [vars(p) for p in problems]}
            raise VerifyFailed(
                f"{len(problems)} file(s) of {repo} failed verification: " + "; ".join(described)
                + (" (pull it again to repair)" if manifest.source == "hub" else "")
            )
        manifest.verified_at = now()
        manifest.warnings = [w for w in manifest.warnings if "mismatch" not in w and "missing" not in w]
        store.write_manifest(manifest)
        scope.index.put(manifest)
        rep.phase("done")
    return {"ok": True, "files": len(manifest.files), "bytes": manifest.total_bytes}


# --------------------------------------------------------------------------- import
def run_import(scope: JobScope, path: str, name: str, link: bool = True) -> dict[str, Any]:
    store, rep = scope.store, scope.reporter
    source = Path(path)
    if not source.is_dir():
        raise NotFoundPermanent(f"{path} is not a directory the worker can see")
    files = list_model_files(source)
    if not files:
        raise NotFoundPermanent(f"{path} holds no files")
    rep.phase("preflight")
    total = sum(p.stat().st_size for _, p in files)
    if not link:
        check_disk(store, total, scope.settings.disk_margin_bytes)
    with scope.lock(name):
        rep.phase("download", bytes_total=total, files_total=len(files), bytes_done=0, files_done=0)
        entries, blobs = [], {}
        for relpath, file_path in files:
            rep.file_started(relpath)
            digest = place_blob(store, name, file_path, link, rep)
            entries.append(FileEntry(path=relpath, size=file_path.stat().st_size, sha256=digest, lfs=False))
            blobs[relpath] = digest
            rep.file_done()
        sha = commit_id(entries)
        for entry in entries:
            store.link_snapshot(name, sha, entry.path, blobs[entry.path])
        rep.phase("verify")
        manifest = _manifest(store, name, "main", sha, "import", entries, blobs, rep)
        store.write_ref(name, "main", sha)
        store.write_manifest(manifest)
        scope.index.put(manifest)
        rep.phase("done")
    return {"model": store.info(manifest).model_dump(mode="json")}


def list_model_files(root: Path) -> list[tuple[str, Path]]:
    """Regular files under ``root`` (following symlinks, as in an HF snapshot), hidden ones skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            full = Path(dirpath) / filename
            if full.is_file():
                found.append((safe_relpath(full.relative_to(root).as_posix()), full))
    return found


def place_blob(store: Store, repo: str, source: Path, link: bool, rep: Reporter) -> str:
    """Hard-link (or copy, hashing on the way) ``source`` to ``blobs/<sha256>``."""
    blobs = store.blobs_dir(repo)
    blobs.mkdir(parents=True, exist_ok=True)
    size = source.stat().st_size
    if link:
        digest = hash_file(source).sha256.hexdigest()
        blob = store.blob_path(repo, digest)
        if not blob.exists():
            try:
                os.link(source.resolve(), blob)
            except OSError:
                return _copy_blob(store, repo, source, rep)
        rep.advance(size)
        return digest
    return _copy_blob(store, repo, source, rep)


def _copy_blob(store: Store, repo: str, source: Path, rep: Reporter) -> str:
    from llf_models.verify import READ_BYTES, Hasher

    tmp = store.blobs_dir(repo) / f".import-{uuid.uuid4().hex}.tmp"
    hasher = Hasher()
    try:
        with source.open("rb") as src, tmp.open("wb") as dst:
            while chunk := src.read(READ_BYTES):
                dst.write(chunk)
                hasher.update(chunk)
                rep.advance(len(chunk))
            dst.flush()
            os.fsync(dst.fileno())
        digest = hasher.sha256.hexdigest()
        os.replace(tmp, store.blob_path(repo, digest))
        return digest
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def commit_id(entries: list[FileEntry]) -> str:
    """A stable 40-hex "commit" for an import: same files and contents, same id."""
    text = "".join(f"{e.path}\0{e.sha256}\n" for e in sorted(entries, key=lambda e: e.path))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def default_import_name(path: str) -> str:
    """``local/<dirname>``, or the repo id when ``path`` is a Hugging Face cache snapshot."""
    source = Path(path).absolute()
    if source.parent.name == "snapshots" and source.parent.parent.name.startswith("models--"):
        parts = source.parent.parent.name[len("models--") :].split("--", 1)
        if len(parts) == 2:
            return f"{parts[0]}/{parts[1]}"
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", source.name).strip("-._")[:96] or "model"
    return f"local/{cleaned}"
