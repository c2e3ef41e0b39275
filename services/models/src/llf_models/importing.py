"""The import job: a local model directory into the store, hashed, with a manifest.

Hard links by default (no second copy of multi-GB weights; falls back to copying across
filesystems). A hard-linked blob shares its inode with the source file, so editing the source
later changes the stored model too: a verify job will then report it.

The directory is hostile input: it must lie under one of the configured ``import_roots``; a
symlink in it that resolves outside it (``tokenizer.model -> ~/.ssh/id_ed25519``) fails the
import; directories are walked once each by (device, inode), so links back to ``.`` cannot make
the walk loop or explode; a copied blob keeps its source's permission bits. An HF cache snapshot
(``models--o--n/snapshots/<sha>``) may link into its own repo folder (``../../blobs``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from llf_common.wire import FileEntry

from llf_models.errors import ImportNotAllowed, Missing, UnsafeImport
from llf_models.progress import Reporter
from llf_models.pulling import build_manifest, check_disk
from llf_models.scope import JobScope
from llf_models.store import Store, safe_relpath
from llf_models.verify import READ_BYTES, Hasher, hash_file


def run_import(scope: JobScope, path: str, name: str, link: bool = True) -> dict[str, Any]:
    store, rep = scope.store, scope.reporter
    source = Path(path)
    check_import_root(source, scope.settings.allowed_import_roots())
    if not source.is_dir():
        raise Missing(f"{path} is not a directory the worker can see")
    files = list_model_files(source)
    if not files:
        raise Missing(f"{path} holds no files")
    rep.phase("preflight")
    total = sum(p.stat().st_size for _, p in files)
    if not link:
        check_disk(store, total, scope.settings.disk_margin_bytes)
    with scope.lock(name) as lock:
        rep.phase("download", bytes_total=total, files_total=len(files), bytes_done=0, files_done=0)
        entries, blobs = [], {}
        for relpath, file_path in files:
            rep.file_started(relpath)
            lock.check()
            digest = place_blob(store, name, file_path, link, rep)
            entries.append(FileEntry(path=relpath, size=file_path.stat().st_size, sha256=digest, lfs=False))
            blobs[relpath] = digest
            rep.file_done()
        sha = commit_id(entries)
        lock.check()
        for entry in entries:
            store.link_snapshot(name, sha, entry.path, blobs[entry.path])
        rep.phase("verify")
        manifest = build_manifest(store, name, "main", sha, "import", entries, blobs, rep)
        lock.check()
        store.write_ref(name, "main", sha)
        lock.check()
        store.write_manifest(manifest)
        scope.index.put(manifest)
        rep.phase("done")
    return {"model": store.info(manifest).model_dump(mode="json")}


def check_import_root(source: Path, roots: list[Path]) -> Path:
    """``source`` resolved, if it lies under one of ``roots`` (also resolved); else ``ImportNotAllowed``."""
    real = source.resolve()
    for root in roots:
        if real.is_relative_to(root.resolve()):
            return real
    shown = ", ".join(str(root) for root in roots)
    raise ImportNotAllowed(f"{source} is not under an allowed import root ({shown}); set import_roots to allow it")


def fence_of(root: Path) -> Path:
    """What links in ``root`` may point into: ``root`` itself, or an HF cache snapshot's repo folder."""
    real = root.resolve()
    if real.parent.name == "snapshots" and real.parent.parent.name.startswith("models--"):
        return real.parent.parent
    return real


def list_model_files(root: Path) -> list[tuple[str, Path]]:
    """Regular files under ``root``, hidden ones skipped; symlinks followed only while they stay inside.

    Each directory is entered once, by (device, inode): a second link to a directory (or to
    ``.``) adds nothing, so the walk is linear in the directory's real size.
    """
    fence = fence_of(root)
    found: list[tuple[str, Path]] = []
    seen: set[tuple[int, int]] = set()

    def walk(directory: Path, prefix: str) -> None:
        info = directory.stat()
        if (info.st_dev, info.st_ino) in seen:
            return
        seen.add((info.st_dev, info.st_ino))
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            path, relpath = Path(entry.path), prefix + entry.name
            if entry.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    continue  # dangling or a loop of links: nothing to import
                if not target.is_relative_to(fence):
                    raise UnsafeImport(
                        f"{relpath} links outside {root} (to {target}); copy the file in or drop the link"
                    )
            if entry.is_dir():
                walk(path, relpath + "/")
            elif entry.is_file():
                found.append((safe_relpath(relpath), path))

    walk(root, "")
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
    """Copy with the source's permission bits: a private file must not become a world-readable blob."""
    tmp = store.blobs_dir(repo) / f".import-{uuid.uuid4().hex}.tmp"
    hasher = Hasher()
    try:
        with source.open("rb") as src, open_like(tmp, src.fileno()) as dst:
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


def open_like(path: Path, source_fd: int) -> BinaryIO:
    """Create ``path`` for writing with the permission bits of the open file ``source_fd``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, stat.S_IMODE(os.fstat(source_fd).st_mode))
    return os.fdopen(fd, "wb")


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
