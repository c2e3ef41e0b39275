"""The model store on disk: a Hugging Face cache plus one manifest per model.

Layout under ``LLF_MODELS_DIR`` (the same as ``~/.cache/huggingface/hub``, so vLLM, transformers
and ``huggingface_hub.snapshot_download(cache_dir=..., local_files_only=True)`` read it as is)::

    models--owner--name/blobs/<etag>                 file contents, named by sha256 (LFS) or git sha1
    models--owner--name/blobs/<etag>.incomplete      a download in progress (stable name: resumable)
    models--owner--name/blobs/<etag>.<w>.incomplete  the same file under its writer's own name
    models--owner--name/snapshots/<sha>/<path>       relative symlinks into blobs/
    models--owner--name/refs/<revision>              the commit sha a branch or tag resolved to
    manifests/owner--name.json                       what we verified: the source of truth

A model is "ready" exactly when its manifest exists: manifests are written last, atomically,
after every byte was verified, and removed first on delete. Nothing here knows about HTTP or
Redis; every path is derived from a validated repo id and checked to stay inside the store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from llf_common.errors import BadRequest
from llf_common.wire import FileEntry, ModelFacts, ModelInfo, check_repo_id
from pydantic import ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

ETAG_PATTERN = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
SHA_PATTERN = re.compile(r"^[0-9a-f]{40}$")
PARTIAL_SUFFIX = ".incomplete"
MAX_RELPATH = 1024


def now() -> datetime:
    return datetime.now(UTC)


def repo_folder_name(repo: str) -> str:
    """``owner/name`` -> ``models--owner--name`` (huggingface_hub's naming)."""
    return "models--" + check_repo_id(repo).replace("/", "--")


def manifest_name(repo: str) -> str:
    return check_repo_id(repo).replace("/", "--") + ".json"


def safe_relpath(path: str) -> str:
    """A repo file path that cannot leave its snapshot: relative, no ``..``, no empty parts."""
    if not path or len(path) > MAX_RELPATH or "\\" in path or "\x00" in path or path.startswith("/"):
        raise BadRequest(f"unsafe file path in repo: {path!r}")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise BadRequest(f"unsafe file path in repo: {path!r}")
    return path


def check_etag(etag: str) -> str:
    if not ETAG_PATTERN.match(etag):
        raise BadRequest(f"unexpected blob id {etag!r} (want a sha1 or sha256 hex digest)")
    return etag


def check_sha(sha: str) -> str:
    if not SHA_PATTERN.match(sha):
        raise BadRequest(f"unexpected commit sha {sha!r}")
    return sha


class Manifest(ModelFacts):
    """What was verified for one model; written as ``manifests/owner--name.json``."""

    model_config = ConfigDict(extra="ignore")

    version: int = 1
    repo: str
    revision: str
    sha: str
    source: Literal["hub", "import"] = "hub"
    files: list[FileEntry] = Field(default_factory=list)
    blobs: dict[str, str] = Field(default_factory=dict, description="File path -> blob name under blobs/.")
    total_bytes: int = 0
    verified_at: datetime | None = None
    created_at: datetime = Field(default_factory=now)

    def to_info(self, snapshot: Path, *, served: bool = False) -> ModelInfo:
        return ModelInfo(
            name=self.repo,
            revision=self.revision,
            sha=self.sha,
            path=str(snapshot),
            size_bytes=self.total_bytes,
            verified=self.verified_at is not None,
            verified_at=self.verified_at,
            **self.model_dump(include=set(ModelFacts.model_fields)),
            source=self.source,
            served=served,
            files=list(self.files),
        )


class Store:
    """Paths and files of the model store; safe to use from the API and from workers at once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.manifests_dir = self.root / "manifests"

    # ------------------------------------------------------------------ paths
    def _inside(self, path: Path) -> Path:
        """Refuse any path that would resolve outside the store (defence in depth)."""
        if not path.absolute().is_relative_to(self.root):
            raise BadRequest(f"path {path} is outside the model store")
        return path

    def repo_dir(self, repo: str) -> Path:
        return self._inside(self.root / repo_folder_name(repo))

    def blobs_dir(self, repo: str) -> Path:
        return self.repo_dir(repo) / "blobs"

    def blob_path(self, repo: str, etag: str) -> Path:
        return self.blobs_dir(repo) / check_etag(etag)

    def partial_path(self, repo: str, etag: str) -> Path:
        return self.blobs_dir(repo) / (check_etag(etag) + PARTIAL_SUFFIX)

    def snapshot_dir(self, repo: str, sha: str) -> Path:
        return self.repo_dir(repo) / "snapshots" / check_sha(sha)

    def snapshot_file(self, repo: str, sha: str, relpath: str) -> Path:
        return self._inside(self.snapshot_dir(repo, sha) / safe_relpath(relpath))

    def ref_path(self, repo: str, revision: str) -> Path:
        return self._inside(self.repo_dir(repo) / "refs" / safe_relpath(revision))

    def manifest_path(self, repo: str) -> Path:
        return self.manifests_dir / manifest_name(repo)

    # ------------------------------------------------------------------ manifests
    def read_manifest(self, repo: str) -> Manifest | None:
        path = self.manifest_path(repo)
        try:
            return Manifest.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (ValidationError, ValueError) as exc:
            log.warning("manifest unreadable", extra={"path": str(path), "error": str(exc)[:200]})
            return None

    def write_manifest(self, manifest: Manifest) -> Path:
        """Atomically (write + fsync + rename): a reader sees the old manifest or the new one."""
        self.manifests_dir.mkdir(parents=True, exist_ok=True)
        path = self.manifest_path(manifest.repo)
        atomic_write(path, manifest.model_dump_json(indent=2).encode())
        return path

    def manifests(self) -> list[Manifest]:
        """Every readable manifest, sorted by repo id."""
        found: list[Manifest] = []
        if not self.manifests_dir.is_dir():
            return found
        for path in sorted(self.manifests_dir.glob("*.json")):
            try:
                manifest = Manifest.model_validate_json(path.read_bytes())
                check_repo_id(manifest.repo)
            except (OSError, ValidationError, ValueError) as exc:
                log.warning("skipping unreadable manifest", extra={"path": str(path), "error": str(exc)[:200]})
                continue
            found.append(manifest)
        return found

    def info(self, manifest: Manifest, *, served: bool = False) -> ModelInfo:
        return manifest.to_info(self.snapshot_dir(manifest.repo, manifest.sha), served=served)

    # ------------------------------------------------------------------ snapshot
    def link_snapshot(self, repo: str, sha: str, relpath: str, etag: str) -> Path:
        """Point ``snapshots/<sha>/<relpath>`` at ``blobs/<etag>`` with a relative symlink."""
        link = self.snapshot_file(repo, sha, relpath)
        blob = self.blob_path(repo, etag)
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(blob, link.parent)
        if link.is_symlink() and os.readlink(link) == target:
            return link
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, link)
        return link

    def write_ref(self, repo: str, revision: str, sha: str) -> None:
        """``refs/<revision>`` holds the sha (no newline), as huggingface_hub writes it."""
        if revision == sha:
            return
        path = self.ref_path(repo, revision)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, sha.encode())

    # ------------------------------------------------------------------ housekeeping
    def delete(self, repo: str) -> bool:
        """Remove the manifest first (so the model stops being ready), then every file of the repo."""
        existed = False
        with contextlib.suppress(FileNotFoundError):
            self.manifest_path(repo).unlink()
            existed = True
        repo_dir = self.repo_dir(repo)
        if repo_dir.exists():
            shutil.rmtree(repo_dir)
            existed = True
        return existed

    def partials(self, repo: str) -> list[Path]:
        blobs = self.blobs_dir(repo)
        return sorted(blobs.glob("*" + PARTIAL_SUFFIX)) if blobs.is_dir() else []

    def purge_partials(self, repo: str) -> int:
        removed = 0
        for path in self.partials(repo):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        return removed

    def writable(self) -> bool:
        """Can we create a file in the store right now (readiness probe)?"""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass
        except OSError:
            return False
        return True

    def free_bytes(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.root).free


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
