"""Git-like repos on disk for the hub stand-in: content-addressed blobs, commits, branches, tags.

Only what the Hub's HTTP API reveals is modelled: a commit is a sha plus a full file table
(path -> size, sha256, git blob id, LFS or not); branches and tags point at commits and
move; old commits stay resolvable. Everything is persisted under ``root`` so that
``python -m tests.support.hub --root DIR`` serves the same repos again after a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

# Extensions the Hub's default .gitattributes stores in LFS; anything above the threshold is LFS too.
LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".onnx", ".ckpt", ".model",
    ".tflite", ".zip", ".gz", ".tar", ".npy", ".npz", ".pkl", ".pickle", ".ot", ".parquet", ".arrow",
)  # fmt: skip
DEFAULT_LFS_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES).encode()
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
CHUNK = 1 << 20


class HubStoreError(ValueError):
    """A repo id, path or revision the stand-in refuses to store."""


@dataclass(frozen=True)
class Blob:
    """Content already in the blob store, named by its sha256."""

    sha256: str
    size: int
    git_oid: str  # sha1 of "blob <size>\0<content>", git's id for the content itself


@dataclass(frozen=True)
class FileMeta:
    """One file of one commit, as the Hub describes it."""

    path: str
    size: int
    sha256: str
    oid: str  # git blob id: of the content, or of the LFS pointer for LFS files
    lfs: bool
    pointer_size: int | None = None

    @property
    def etag(self) -> str:
        """What ``/resolve`` sends as ETag: the sha256 for LFS files, the git blob id otherwise."""
        return self.sha256 if self.lfs else self.oid


@dataclass(frozen=True)
class Commit:
    sha: str
    parent: str | None
    title: str
    date: str
    files: Mapping[str, FileMeta]


@dataclass
class Repo:
    repo_id: str
    gated: bool = False
    created_at: str = ""
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        """A branch, a tag or a full commit sha of this repo's history."""
        sha = self.branches.get(revision) or self.tags.get(revision)
        if sha is None and COMMIT_SHA.match(revision):
            sha = revision
        return self.commits.get(sha) if sha else None


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def check_path(path: str) -> str:
    """A relative POSIX path inside a repo: no '..', no absolute paths, no empty parts."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts) or "\\" in path:
        raise HubStoreError(f"invalid path in repo: {path!r}")
    return path


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class RepoStore:
    """All repos of one stand-in; thread-safe (the server thread reads while tests write)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.repos_dir = self.root / "repos"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.repos_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.repos: dict[str, Repo] = {}
        for manifest in sorted(self.repos_dir.glob("*/*.json")):
            repo = _load_repo(manifest)
            self.repos[repo.repo_id] = repo

    # ------------------------------------------------------------ blobs
    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256

    def put_bytes(self, data: bytes) -> Blob:
        return self._put_chunks([data], len(data))

    def put_file(self, path: Path) -> Blob:
        size = path.stat().st_size
        with path.open("rb") as handle:
            return self._put_chunks(iter(lambda: handle.read(CHUNK), b""), size)

    def put_random(self, size: int, seed: int) -> Blob:
        """``size`` pseudo-random bytes from ``seed``: large files without keeping them in memory."""
        rng = np.random.default_rng(seed)

        def chunks() -> Iterable[bytes]:
            left = size
            while left > 0:
                n = min(CHUNK * 8, left)
                yield rng.bytes(n)
                left -= n

        return self._put_chunks(chunks(), size)

    def _put_chunks(self, chunks: Iterable[bytes], size: int) -> Blob:
        sha256 = hashlib.sha256()
        sha1 = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
        fd, tmp_name = tempfile.mkstemp(dir=self.blobs, prefix=".incoming-")
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    sha256.update(chunk)
                    sha1.update(chunk)
                    out.write(chunk)
                    written += len(chunk)
            if written != size:
                raise HubStoreError(f"blob changed while it was read: {written} bytes, expected {size}")
            digest = sha256.hexdigest()
            os.replace(tmp_name, self.blob_path(digest))
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return Blob(sha256=digest, size=size, git_oid=sha1.hexdigest())

    # ------------------------------------------------------------ commits
    def commit(
        self,
        repo_id: str,
        blobs: Mapping[str, Blob],
        *,
        branch: str = "main",
        tags: Iterable[str] = (),
        gated: bool | None = None,
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        keep_existing: bool = False,
        title: str | None = None,
    ) -> str:
        """A new commit on ``branch`` (created if needed); returns its sha."""
        if not REPO_ID.match(repo_id) or ".." in repo_id:
            raise HubStoreError(f"invalid repo id: {repo_id!r}")
        with self.lock:
            repo = self.repos.get(repo_id) or Repo(repo_id=repo_id, created_at=now_iso())
            if gated is not None:
                repo.gated = gated
            parent = repo.branches.get(branch)
            files: dict[str, FileMeta] = {}
            if keep_existing and parent:
                files.update(repo.commits[parent].files)
            for path, blob in blobs.items():
                files[check_path(path)] = _file_meta(path, blob, lfs_threshold)
            payload = {
                "repo": repo_id,
                "branch": branch,
                "parent": parent,
                "seq": len(repo.commits),
                "files": {p: f.oid for p, f in sorted(files.items())},
            }
            sha = hashlib.sha1(json.dumps(payload, sort_keys=True).encode(), usedforsecurity=False).hexdigest()
            title = title or f"Upload {len(blobs)} file(s)"
            repo.commits[sha] = Commit(sha=sha, parent=parent, title=title, date=now_iso(), files=files)
            repo.branches[branch] = sha
            for tag in tags:
                repo.tags[tag] = sha
            self.repos[repo_id] = repo
            self._save(repo)
            return sha

    def set_gated(self, repo_id: str, gated: bool) -> None:
        with self.lock:
            self.get(repo_id).gated = gated
            self._save(self.get(repo_id))

    def get(self, repo_id: str) -> Repo:
        with self.lock:
            try:
                return self.repos[repo_id]
            except KeyError:
                raise HubStoreError(f"no such repo: {repo_id}") from None

    def find(self, repo_id: str) -> Repo | None:
        with self.lock:
            return self.repos.get(repo_id)

    def _save(self, repo: Repo) -> None:
        owner, name = repo.repo_id.split("/")
        target = self.repos_dir / owner / f"{name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "repo_id": repo.repo_id,
            "gated": repo.gated,
            "created_at": repo.created_at,
            "branches": repo.branches,
            "tags": repo.tags,
            "commits": [{**asdict(c), "files": [asdict(f) for f in c.files.values()]} for c in repo.commits.values()],
        }
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, target)


def _file_meta(path: str, blob: Blob, lfs_threshold: int) -> FileMeta:
    lfs = path.endswith(LFS_SUFFIXES) or blob.size >= lfs_threshold
    if not lfs:
        return FileMeta(path=path, size=blob.size, sha256=blob.sha256, oid=blob.git_oid, lfs=False)
    pointer = lfs_pointer(blob.sha256, blob.size)
    return FileMeta(
        path=path,
        size=blob.size,
        sha256=blob.sha256,
        oid=git_blob_oid(pointer),
        lfs=True,
        pointer_size=len(pointer),
    )


def _load_repo(manifest: Path) -> Repo:
    data = json.loads(manifest.read_text(encoding="utf-8"))
    commits = {
        c["sha"]: Commit(
            sha=c["sha"],
            parent=c["parent"],
            title=c["title"],
            date=c["date"],
            files={f["path"]: FileMeta(**f) for f in c["files"]},
        )
        for c in data["commits"]
    }
    return Repo(
        repo_id=data["repo_id"],
        gated=data["gated"],
        created_at=data["created_at"],
        branches=data["branches"],
        tags=data["tags"],
        commits=commits,
    )


def tree_files(directory: Path) -> dict[str, Path]:
    """Every regular file under ``directory`` as ``{relative posix path: path}``."""
    return {
        path.relative_to(directory).as_posix(): path
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }
