"""The Hugging Face Hub as the registry sees it: resolve a revision, list files, locate bytes.

Everything goes through ``huggingface_hub`` (``HfApi.model_info(files_metadata=True)``,
``hf_hub_url``, ``get_hf_file_metadata``, ``build_hf_headers``), so ``HF_ENDPOINT`` mirrors, auth
and the hub's error classes behave as in every other HF tool. Only the byte transfer is ours
(``download.py``), because the library does not resume across processes.

Errors are translated into ``LLFError``s whose messages name the repo and what to do, and
never contain the token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, filter_repo_objects
from llf_common.errors import LLFError, NotFound, UpstreamError
from pydantic import SecretStr

from llf_models import __version__
from llf_models.errors import Permanent
from llf_models.store import check_etag, check_sha, safe_relpath


class HubNotFound(NotFound, Permanent):
    """Repo, revision or file does not exist (or is private and we have no access)."""


class HubAccessDenied(LLFError, Permanent):
    status_code = 403
    code = "hub_access_denied"


class HubUnavailable(UpstreamError):
    """Network error or 5xx from the hub: worth retrying."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    etag: str  # blob name in the cache: the LFS sha256, or git's blob sha1 for small files
    sha256: str | None  # known up front for LFS files only
    lfs: bool


@dataclass(frozen=True)
class RemoteRepo:
    repo: str
    revision: str
    sha: str
    files: tuple[RemoteFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class FileLocation:
    url: str
    size: int | None
    etag: str | None
    same_host: bool  # send the token only to the hub itself, not to a CDN it redirects to


class HubClient:
    """One hub endpoint and token; cheap to create, thread-safe."""

    def __init__(self, endpoint: str, token: SecretStr | None = None, timeout: float = 30.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._token: str | bool = token.get_secret_value() if token else False
        self.timeout = timeout
        self.api = HfApi(endpoint=self.endpoint, token=self._token, library_name="llf", library_version=__version__)

    def headers(self) -> dict[str, str]:
        return build_hf_headers(token=self._token, library_name="llf", library_version=__version__)

    def resolve(
        self,
        repo: str,
        revision: str = "main",
        allow_patterns: list[str] | None = None,
        ignore_patterns: list[str] | None = None,
    ) -> RemoteRepo:
        """The commit ``revision`` points at and the files to fetch (after the patterns)."""
        try:
            info = self.api.model_info(repo, revision=revision, files_metadata=True, timeout=self.timeout)
        except Exception as exc:
            raise translate(exc, repo, revision) from None
        if not info.sha:
            raise HubUnavailable(f"the hub did not say which commit {repo}@{revision} is")
        files = []
        for sibling in info.siblings or []:
            path = safe_relpath(sibling.rfilename)
            lfs = sibling.lfs
            if lfs is not None:
                sha256 = str(lfs["sha256"]) if isinstance(lfs, dict) else str(lfs.sha256)
                size = int(lfs["size"]) if isinstance(lfs, dict) else int(lfs.size)
                files.append(RemoteFile(path, size, check_etag(sha256), sha256, True))
            else:
                if sibling.blob_id is None or sibling.size is None:
                    raise HubUnavailable(f"the hub gave no size or blob id for {repo}/{path}")
                files.append(RemoteFile(path, int(sibling.size), check_etag(sibling.blob_id), None, False))
        selected = list(
            filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns, key=_path)
        )
        if not selected:
            raise HubNotFound(f"no file of {repo}@{revision} matches the allow/ignore patterns")
        return RemoteRepo(repo=repo, revision=revision, sha=check_sha(info.sha), files=tuple(selected))

    def locate(self, repo: str, sha: str, path: str) -> FileLocation:
        """HEAD the file: where its bytes are (a CDN for big files on the real hub) and its etag."""
        url = hf_hub_url(repo, path, revision=sha, endpoint=self.endpoint)
        try:
            meta = get_hf_file_metadata(url, token=self._token, timeout=self.timeout, endpoint=self.endpoint)
        except Exception as exc:
            raise translate(exc, repo, sha, path) from None
        location = meta.location or url
        same_host = urlsplit(location).netloc == urlsplit(self.endpoint).netloc
        return FileLocation(url=location, size=meta.size, etag=meta.etag, same_host=same_host)


def _path(item: RemoteFile) -> str:
    return item.path


def translate(exc: BaseException, repo: str, revision: str | None = None, path: str | None = None) -> LLFError:
    """A hub failure as one clear sentence (and the right status code)."""
    what = repo + (f"@{revision}" if revision else "") + (f" file {path}" if path else "")
    if isinstance(exc, GatedRepoError):
        return HubAccessDenied(
            f"{repo} is gated: accept its licence on the hub and set HF_TOKEN to a token with access"
        )
    if isinstance(exc, RevisionNotFoundError):
        return HubNotFound(f"revision {revision} not found in {repo}")
    if isinstance(exc, EntryNotFoundError):
        return HubNotFound(f"{what} not found on the hub")
    if isinstance(exc, RepositoryNotFoundError):
        return HubNotFound(f"repository {repo} not found on the hub (if it is private or gated, set HF_TOKEN)")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            return HubAccessDenied(f"the hub refused access to {what} ({status}): check HF_TOKEN")
        if status == 404:
            return HubNotFound(f"{what} not found on the hub")
        return HubUnavailable(f"the hub answered {status} for {what}")
    if isinstance(exc, httpx2.HTTPError | OSError):
        return HubUnavailable(f"cannot reach the hub for {what}: {type(exc).__name__}")
    if isinstance(exc, LLFError):
        return exc
    logging.getLogger(__name__).warning("unexpected hub error", exc_info=exc)
    return HubUnavailable(f"unexpected answer from the hub for {what}: {type(exc).__name__}")
