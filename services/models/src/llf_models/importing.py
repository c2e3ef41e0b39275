"""The import job: a local model directory into the store, hashed, with a manifest.

Hard links by default (no second copy of multi-GB weights; falls back to copying across
filesystems). A hard-linked blob shares its inode with the source file, so editing the source
later changes the stored model too: a verify job will then report it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import Any

from llf_common.wire import FileEntry

from llf_models.errors import Missing
from llf_models.progress import Reporter
from llf_models.pulling import build_manifest, check_disk
from llf_models.scope import JobScope
from llf_models.store import Store, safe_relpath
from llf_models.verify import READ_BYTES, Hasher, hash_file


def run_import(scope: JobScope, path: str, name: str, link: bool = True) -> dict[str, Any]:
    store, rep = scope.store, scope.reporter
    source = Path(path)
    if not source.is_dir():
        raise Missing(f"{path} is not a directory the worker can see")
    files = list_model_files(source)
    if not files:
        raise Missing(f"{path} holds no files")
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
        manifest = build_manifest(store, name, "main", sha, "import", entries, blobs, rep)
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
